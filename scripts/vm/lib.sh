# shellcheck shell=bash
# Functions to boot a Debian kernel under QEMU with a busybox initramfs and collect what the
# guest wrote. Source it from a scenario script (scripts/vm/mem-usage.sh is one).
#
#   vm_require_packages PKG...        install Debian packages that are missing (as root)
#   vm_kernel_package [SERIES] [ARCH] newest linux-image-SERIES.*-ARCH apt offers (default 6.1,
#                                     amd64)
#   vm_fetch_kernel PKG[:ARCH]|DEB,...  download (or take the given .deb files) and extract into
#                                     the cache; sets VM_KDIR, VM_KVER, VM_VMLINUZ, VM_MODDIR.
#                                     PKG:ARCH (apt's syntax) fetches another architecture's
#                                     kernel (see vm_add_foreign_arch)
#   vm_add_foreign_arch ARCH          lets apt fetch ARCH's packages (dpkg --add-architecture)
#   vm_fetch_deb PKG[:ARCH]           download and extract any package into the cache (e.g.
#                                     busybox-static:arm64 for an arm64 guest); sets VM_DEB_ROOT
#   vm_build_vmcore                   static (musl) release build of vmcore; sets VM_VMCORE
#   vm_initrd_new                     a fresh initramfs tree with busybox (VM_BUSYBOX, default
#                                     /bin/busybox) and the guest /init; sets VM_ROOT
#   vm_initrd_add_bin SRC [NAME]      a binary into /bin, with the shared libraries it needs
#   vm_initrd_add_file SRC DEST       any file (DEST is a path inside the guest)
#   vm_initrd_add_modules MOD...      kernel modules of VM_KDIR and their dependencies, loaded
#                                     in order by /init (virtio_pci and virtio_blk always are)
#   vm_initrd_pack OUT                the tree as a gzip'd newc cpio
#   vm_boot INITRD OUTDIR             boots VM_KDIR with INITRD under QEMU (TCG), with a virtio
#                                     disk for results; the guest's /out lands in OUTDIR/out,
#                                     the serial console in OUTDIR/console.log
#
# The guest /init mounts proc, sys, dev and a tmpfs on /tmp, loads the modules, runs
# /scenario (a busybox sh script the caller adds) with /out as its working folder, writes
# /out as a tar onto /dev/vda and powers off. /scenario's exit status is in out/status.
#
# Environment:
#   VMCORE_VM_CACHE    kernels are kept here (default ~/.cache/vmcore-vm)
#   VMCORE_VM_TIMEOUT  seconds before QEMU is killed (default 900)
#   VMCORE_VM_BINARY   a vmcore binary to use instead of building one
#   VM_MEM, VM_CPU, VM_SMP, VM_APPEND   guest RAM (512M), CPU model (max: offers 5-level
#                      paging under TCG), vCPUs (2), extra kernel arguments
#   VM_SCRATCH         size of an empty second disk, /dev/vdb, for the scenario (none if unset)

VM_CACHE=${VMCORE_VM_CACHE:-$HOME/.cache/vmcore-vm}
VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_REPO=$(cd "$VM_LIB_DIR/../.." && pwd)

vm_say() { echo "[vm $(date +%H:%M:%S)] $*" >&2; }
# Infrastructure failures (not a verdict on vmcore) exit 2.
vm_die() { echo "vm: ERROR: $*" >&2; exit 2; }

_vm_apt_updated=
_vm_apt_update() {
  [ -n "$_vm_apt_updated" ] && return 0
  vm_say "apt-get update"
  apt-get update -qq || vm_die "apt-get update failed"
  _vm_apt_updated=1
}

_vm_is_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

vm_require_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  _vm_is_root_with_apt || vm_die "missing packages: ${missing[*]} (run as root to install them, or apt-get install them)"
  _vm_apt_update
  vm_say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || vm_die "apt-get install ${missing[*]} failed"
}

# Newest linux-image-SERIES.N-ABI-amd64 package (signed image, not -unsigned or -dbg).
# Without apt lists (a fresh machine), updates them first when root.
# With ARCH (a Debian architecture, default amd64): linux-image-SERIES.N-ABI-ARCH (another
# architecture's names are listed once vm_add_foreign_arch added it).
vm_kernel_package() {
  local series=${1:-6.1} arch=${2:-amd64} re pkgs
  # 6.1.0-56-amd64 (bookworm), 6.12.38+deb12-amd64 (bookworm-backports)
  re="^linux-image-${series//./\\.}\.[0-9]+(-[0-9]+|\+deb[0-9]+)-${arch}\$"
  pkgs=$(apt-cache pkgnames "linux-image-$series." 2>/dev/null | grep -E "$re" || true)
  if [ -z "$pkgs" ] && _vm_is_root_with_apt && [ -z "$_vm_apt_updated" ]; then
    _vm_apt_update
    pkgs=$(apt-cache pkgnames "linux-image-$series." 2>/dev/null | grep -E "$re" || true)
  fi
  [ -n "$pkgs" ] || return 1
  echo "$pkgs" | sort -V | tail -1
}

# Downloads PKG (apt-get download) and extracts it (dpkg -x) into the cache, once.
# PKG:ARCH downloads ARCH's package (and ARCH's packages it names), cached as PKG.
vm_fetch_kernel() {
  local pkg=$1 dir deb dep arch=''
  local -a debs=()
  [[ $pkg == *.deb* || $pkg != *:* ]] || { arch=${pkg##*:}; pkg=${pkg%:*}; }
  # A comma-separated list of .deb files (a kernel apt cannot fetch here: another suite's)
  # is extracted as given; a package name is downloaded with apt.
  if [[ $pkg == *.deb* ]]; then
    IFS=, read -r -a debs <<< "$pkg"
    dir=$VM_CACHE/kernels/$(basename "${debs[0]}" .deb)
  else
    dir=$VM_CACHE/kernels/$pkg
  fi
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"; mkdir -p "$dir/dl"
    if [ ${#debs[@]} -eq 0 ]; then
      vm_say "downloading $pkg${arch:+:$arch} into $dir"
      _vm_download "$dir/dl" "$pkg${arch:+:$arch}"
      deb=$(ls "$dir"/dl/*.deb 2>/dev/null | head -1)
      [ -n "$deb" ] || vm_die "apt-get download $pkg failed"
      # Since 7.x Debian's linux-image is a metapackage over linux-binary (vmlinuz) and
      # linux-modules: fetch what it names.
      for dep in $(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | awk '{print $1}' | grep -E '^linux-(binary|modules)-'); do
        _vm_download "$dir/dl" "$dep${arch:+:$arch}"
      done
      debs=("$dir"/dl/*.deb)
    fi
    for deb in "${debs[@]}"; do
      [ -f "$deb" ] || vm_die "$deb: no such file"
      dpkg -x "$deb" "$dir/root" || vm_die "dpkg -x $deb failed"
    done
    rm -rf "$dir/dl"
    touch "$dir/.complete"
  fi
  VM_KDIR=$dir/root
  # Modules and the image under /lib and /boot, or (usrmerged kernels, 6.12+ in trixie)
  # under /usr/lib/modules/KVER with vmlinuz beside them.
  VM_MODDIR=$VM_KDIR/lib/modules
  [ -d "$VM_MODDIR" ] || VM_MODDIR=$VM_KDIR/usr/lib/modules
  VM_KVER=$(ls "$VM_MODDIR" 2>/dev/null | head -1)
  VM_VMLINUZ=$VM_KDIR/boot/vmlinuz-$VM_KVER
  [ -f "$VM_VMLINUZ" ] || VM_VMLINUZ=$VM_MODDIR/$VM_KVER/vmlinuz
  [ -n "$VM_KVER" ] && [ -f "$VM_VMLINUZ" ] || vm_die "$pkg: no kernel in $VM_KDIR"
  VM_MODDIR=$VM_MODDIR/$VM_KVER
}

# apt-get download PKG[:ARCH] into DIR (updating the lists once when that is what it lacks).
_vm_download() {
  local dir=$1 pkg=$2
  # apt's _apt user may not reach the cache folder: it then downloads as root, and says so
  (cd "$dir" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed') || true
  if ! ls "$dir"/"${pkg%:*}"_*.deb >/dev/null 2>&1 && _vm_is_root_with_apt && [ -z "$_vm_apt_updated" ]; then
    _vm_apt_update
    (cd "$dir" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed') || true
  fi
}

# vmcore for the guest: a static musl binary when the musl target is there (rustup can add
# it only where its server is reachable), else the host build, with its shared libraries
# copied into the initramfs like any other binary.
vm_build_vmcore() {
  local musl=x86_64-unknown-linux-musl target=()
  if [ -n "${VMCORE_VM_BINARY:-}" ]; then
    VM_VMCORE=$VMCORE_VM_BINARY; vm_say "using $VM_VMCORE (VMCORE_VM_BINARY), not building"; return 0
  fi
  if command -v rustup >/dev/null; then
    rustup target list --installed 2>/dev/null | grep -qx $musl || rustup target add $musl >/dev/null 2>&1 || true
    rustup target list --installed 2>/dev/null | grep -qx $musl && target=(--target "$musl")
  fi
  if [ ${#target[@]} -gt 0 ]; then
    command -v musl-gcc >/dev/null || vm_require_packages musl-tools
  else
    vm_say "note: Rust target $musl is not installed: building for the host (dynamic)"
  fi
  vm_say "cargo build --release ${target[*]} --bin vmcore"
  (cd "$VM_REPO" && cargo build --release --locked -q "${target[@]}" --bin vmcore) \
    || vm_die "building vmcore failed"
  if [ ${#target[@]} -gt 0 ]; then
    VM_VMCORE=$VM_REPO/target/$musl/release/vmcore
  else
    VM_VMCORE=$VM_REPO/target/release/vmcore
  fi
}

vm_initrd_new() {
  VM_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/vmcore-vm-root.XXXXXX")
  mkdir -p "$VM_ROOT"/{bin,proc,sys,dev,tmp,out,lib/modules}
  # busybox-static's /bin/busybox (Debian's dynamic busybox would need its libc too), or
  # VM_BUSYBOX: another one (another architecture's busybox-static, from vm_fetch_deb)
  if [ -n "${VM_BUSYBOX:-}" ]; then
    [ -x "$VM_BUSYBOX" ] || vm_die "no $VM_BUSYBOX (VM_BUSYBOX)"
    vm_initrd_add_bin "$VM_BUSYBOX" busybox
  else
    [ -x /bin/busybox ] || vm_die "no /bin/busybox (apt-get install busybox-static)"
    vm_initrd_add_bin /bin/busybox
  fi
  cp "$VM_LIB_DIR/guest-init" "$VM_ROOT/init"
  chmod 755 "$VM_ROOT/init"
  : > "$VM_ROOT/lib/modules/order"
  vm_initrd_add_modules virtio_pci virtio_blk
}

vm_initrd_add_file() {
  mkdir -p "$VM_ROOT$(dirname "$2")"
  cp -L "$1" "$VM_ROOT$2"
}

vm_initrd_add_bin() {
  local src=$1 name=${2:-$(basename "$1")} lib
  [ -x "$src" ] || vm_die "no such binary: $src"
  cp -L "$src" "$VM_ROOT/bin/$name"
  # ldd prints "not a dynamic executable" (and fails) for static binaries: nothing to copy
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*\.so[^ ]*' || true); do
    [ -e "$VM_ROOT$lib" ] || vm_initrd_add_file "$lib" "$lib"
  done
}

_vm_module_file() { find "$VM_MODDIR" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" | head -1; }

# Adds each module after the modules it depends on (from its .modinfo "depends="), once.
# A module that is built in (no file) is skipped.
vm_initrd_add_modules() {
  local m f deps d
  for m in "$@"; do
    m=${m//-/_}
    grep -qx "$m.ko" "$VM_ROOT/lib/modules/order" && continue
    f=$(_vm_module_file "$m")
    [ -z "$f" ] && f=$(_vm_module_file "${m//_/-}")
    [ -n "$f" ] || continue
    case $f in
      *.xz) xz -dc "$f" > "$VM_ROOT/lib/modules/$m.ko" ;;
      *.zst) zstd -dcq "$f" > "$VM_ROOT/lib/modules/$m.ko" ;;
      *) cp "$f" "$VM_ROOT/lib/modules/$m.ko" ;;
    esac
    deps=$(tr '\0' '\n' < "$VM_ROOT/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -1)
    for d in ${deps//,/ }; do vm_initrd_add_modules "$d"; done
    echo "$m.ko" >> "$VM_ROOT/lib/modules/order"
  done
}

vm_initrd_pack() {
  (cd "$VM_ROOT" && find . | cpio -o -H newc --quiet | gzip -1) > "$1" || vm_die "cpio failed"
  rm -rf "$VM_ROOT"
}

# vm_boot INITRD OUTDIR: returns 0 when the guest wrote its results, 2 otherwise.
vm_boot() {
  local initrd=$1 outdir=$2 rc=0 scratch=()
  mkdir -p "$outdir"
  if [ -n "${VM_SCRATCH:-}" ]; then
    rm -f "$outdir/scratch.img"
    truncate -s "$VM_SCRATCH" "$outdir/scratch.img"
    scratch=("$outdir/scratch.img")
  fi
  vm_boot_disks "$initrd" "$outdir" "${scratch[@]}" || rc=$?
  rm -f "$outdir/scratch.img"
  return $rc
}

# ---- added for kdump.sh ----
#   vm_initrd_add_symlink TARGET LINK  a symbolic link LINK (a path inside the guest) to TARGET
#   vm_boot_disks INITRD OUTDIR IMG... vm_boot with the caller's raw disk images after the
#                                     results disk (/dev/vdb, /dev/vdc, ... in the guest); they
#                                     are left in place for the caller to read

vm_initrd_add_symlink() {
  mkdir -p "$VM_ROOT$(dirname "$2")"
  ln -sfn "$1" "$VM_ROOT$2"
}

# vm_boot_disks INITRD OUTDIR IMG...: returns 0 when the guest wrote its results, 2 otherwise.
vm_boot_disks() {
  local initrd=$1 outdir=$2 disk rc=0 start img drives=()
  shift 2
  mkdir -p "$outdir"
  disk=$outdir/results.img
  rm -rf "$disk" "$outdir/out"
  truncate -s 64M "$disk"
  for img in "$@"; do drives+=(-drive "file=$img,format=raw,if=virtio"); done
  local append="console=ttyS0 panic=1 ${VM_APPEND:-}"
  vm_say "booting $VM_KVER (TCG, -cpu ${VM_CPU:-max}, ${VM_MEM:-512M}): $append"
  vm_say "console: $outdir/console.log"
  start=$(date +%s)
  # nested KVM hangs on these machines: software emulation, multi-threaded
  timeout "${VMCORE_VM_TIMEOUT:-900}" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu "${VM_CPU:-max}" -m "${VM_MEM:-512M}" -smp "${VM_SMP:-2}" \
    -nodefaults -display none -serial "file:$outdir/console.log" -no-reboot \
    -kernel "$VM_VMLINUZ" -initrd "$initrd" -append "$append" \
    -drive "file=$disk,format=raw,if=virtio" "${drives[@]}" < /dev/null > "$outdir/qemu.log" 2>&1 || rc=$?
  VM_BOOT_SECONDS=$(( $(date +%s) - start ))
  [ $rc = 0 ] && { (cd "$outdir" && tar xf results.img 2>/dev/null) || true; }
  rm -f "$disk"
  if [ $rc = 124 ]; then
    vm_say "QEMU killed after ${VMCORE_VM_TIMEOUT:-900}s; last console lines:"
    tail -20 "$outdir/console.log" >&2
    return 2
  fi
  [ $rc = 0 ] || { vm_say "QEMU failed ($rc):"; cat "$outdir/qemu.log" >&2; return 2; }
  if [ ! -f "$outdir/out/status" ]; then
    vm_say "the guest wrote no results (${VM_BOOT_SECONDS}s); last console lines:"
    tail -30 "$outdir/console.log" >&2
    return 2
  fi
  vm_say "guest done in ${VM_BOOT_SECONDS}s"
}

# vm_check NAME OK(0|1) DETAIL: one check's verdict, printed ("PASS NAME: DETAIL" or
# "FAIL ...") and counted in VM_PASSED and VM_TOTAL; failures are kept in VM_FAILS.
VM_PASSED=0 VM_TOTAL=0 VM_FAILS=()
vm_check() {
  VM_TOTAL=$((VM_TOTAL + 1))
  if [ "$2" = 1 ]; then
    VM_PASSED=$((VM_PASSED + 1))
    echo "PASS $1: $3"
  else
    VM_FAILS+=("$1: $3")
    echo "FAIL $1: $3"
  fi
}

# vm_verdict PASSED_WHAT FAILED_WHAT: a scenario's last lines and its exit, from vm_check's
# counts: "PASS: PASSED_WHAT (PASSED/TOTAL checks)" and 0 when every check passed, else
# each failure as "FAIL: ..." and "FAILED: FAILED_WHAT (PASSED/TOTAL checks passed)" and 1.
vm_verdict() {
  if [ ${#VM_FAILS[@]} = 0 ]; then
    echo "PASS: $1 ($VM_PASSED/$VM_TOTAL checks)"
    exit 0
  fi
  local f
  for f in "${VM_FAILS[@]}"; do echo "FAIL: $f"; done
  echo "FAILED: $2 ($VM_PASSED/$VM_TOTAL checks passed)"
  exit 1
}

# ---- added for qemu-dump.sh --arch arm64 ----
#   vm_add_foreign_arch ARCH  dpkg --add-architecture ARCH and apt-get update (as root), once
#   vm_fetch_deb PKG[:ARCH]   apt-get download + dpkg -x into VM_CACHE/debs/PKG_ARCH, once;
#                             sets VM_DEB_ROOT (the extracted tree)

vm_add_foreign_arch() {
  local arch=$1
  [ "$arch" = "$(dpkg --print-architecture)" ] && return 0
  dpkg --print-foreign-architectures | grep -qx "$arch" && return 0
  _vm_is_root_with_apt || vm_die "apt does not fetch $arch packages (as root: dpkg --add-architecture $arch; apt-get update)"
  vm_say "dpkg --add-architecture $arch"
  dpkg --add-architecture "$arch" || vm_die "dpkg --add-architecture $arch failed"
  _vm_apt_updated=
  _vm_apt_update
}

vm_fetch_deb() {
  local pkg=$1 dir deb
  local -a found
  dir=$VM_CACHE/debs/${pkg/:/_}
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"; mkdir -p "$dir/dl"
    vm_say "downloading $pkg into $dir"
    _vm_download "$dir/dl" "$pkg"
    found=("$dir"/dl/"${pkg%:*}"_*.deb)
    deb=${found[0]}
    [ -f "$deb" ] || vm_die "apt-get download $pkg failed"
    dpkg -x "$deb" "$dir/root" || vm_die "dpkg -x $deb failed"
    basename "$deb" > "$dir/deb.txt"
    rm -rf "$dir/dl"
    touch "$dir/.complete"
  fi
  # shellcheck disable=SC2034 # (the caller's)
  VM_DEB_ROOT=$dir/root
}
