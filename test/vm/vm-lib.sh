# Sourced by the host side of the QEMU guest tests (pcie_test.sh,
# nvmet_tcp_test.sh) and scripts/bench/pcie-guest-fio.sh: finding QEMU,
# packing programs into the guest, and asserting the guest's results.
# The caller sets `tmp` (its temporary directory) and `serial` (the guest's
# serial log) before using result/expect/vm_logs.

# Sets qemu and qemu_share (an array): NVMUX_QEMU_DIR's bin/qemu-system-x86_64
# (default ../shared/peers/qemu beside the source tree ROOT), else
# qemu-system-x86_64 on PATH; exits 77 (skipped) when there is none.
vm_find_qemu() {  # ROOT
  local qemu_dir=${NVMUX_QEMU_DIR:-$(cd "$1/.." && pwd)/shared/peers/qemu}
  qemu=$qemu_dir/bin/qemu-system-x86_64 qemu_share=(-L "$qemu_dir/share/qemu")
  if [ ! -x "$qemu" ]; then
    qemu=$(command -v qemu-system-x86_64 || true) qemu_share=()
    [ -n "$qemu" ] || { echo "SKIP: no qemu-system-x86_64 (NVMUX_QEMU_DIR or PATH)"; exit 77; }
  fi
}

# Builds OUT: the cached base initramfs (build-guest.sh) followed by a second
# archive holding INIT as /init and each PROGRAM in /nvmux/bin with every
# library ldd names in /nvmux/lib (the dynamic loader in /lib64). nvmux's
# programs link DPDK statically; the rest is libc, libstdc++, libnuma...
# Scripts among the programs are copied as they are.
vm_initramfs() {  # CACHE_DIR INIT OUT PROGRAM...
  local cache=$1 init=$2 out=$3 ov b lib
  shift 3
  ov=$(mktemp -d "$out.overlay.XXXXXX")
  mkdir -p "$ov/nvmux/bin" "$ov/nvmux/lib" "$ov/lib64"
  install -m 0755 "$init" "$ov/init"
  for b in "$@"; do
    cp "$b" "$ov/nvmux/bin/"
    ldd "$b" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
      case "$lib" in */ld-linux*) cp -L "$lib" "$ov/lib64/$(basename "$lib")" ;; *) cp -L "$lib" "$ov/nvmux/lib/" ;; esac
    done
  done
  (cd "$ov" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$out.overlay.cpio.gz")
  cat "$cache/initramfs.cpio.gz" "$out.overlay.cpio.gz" >"$out"
  rm -rf "$ov" "$out.overlay.cpio.gz"
}

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

# The value of the guest's first `GUEST-RESULT ... KEY=VALUE` line.
result() {  # KEY
  sed -n "s/^GUEST-RESULT .*\\b$1=\\([^ ]*\\).*/\\1/p" "$serial" | tr -d '\r' | head -1
}
expect() {  # KEY EXPECTED DESCRIPTION
  local got
  got=$(result "$1")
  if [ "$got" = "$2" ]; then pass "$3 ($1=$got)"; else fail "$3: $1='$got', expected '$2'"; fi
}

# Waits until the serial log has a line matching the regex, QEMU (PID) exits
# or SECONDS passes; returns 0 when the line came.
vm_wait_serial() {  # REGEX PID SECONDS
  local until=$((SECONDS + $3))
  while [ $SECONDS -lt $until ]; do
    grep -q "$1" "$serial" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { grep -q "$1" "$serial" 2>/dev/null; return; }
    sleep 0.5
  done
  return 1
}

# After a failure: the guest's serial log and QEMU's own output.
vm_logs() {
  echo "----- guest serial log -----"; cat "$serial"
  echo "----- qemu -----"; cat "$tmp/qemu.log" 2>/dev/null
}
