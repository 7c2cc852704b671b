#!/bin/bash
# Interop test: Linux's own nvme driver, in a QEMU TCG guest (QEMU 10.2's
# vfio-user client), drives nvmux-emu. See test/vm/README.md.
#
# Usage: guest_test.sh --emu BIN --identify BIN --cache DIR
# Env:   NVMUX_QEMU_DIR  QEMU with the vfio-user client (bin/qemu-system-x86_64);
#                        default ../shared/peers/qemu beside the source tree.
#        NVMUX_GUEST_KEEP=1  keep the temporary directory (logs) for a look.
# Exit:  0 pass, 1 fail, 77 skipped (no QEMU).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
emu= identify= cache=
while [ $# -gt 0 ]; do
  case "$1" in
    --emu) emu=$2; shift 2 ;;
    --identify) identify=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "guest_test: unknown argument '$1' (allowed: --emu BIN --identify BIN --cache DIR)" >&2; exit 2 ;;
  esac
done
[ -x "$emu" ] && [ -x "$identify" ] && [ -n "$cache" ] ||
  { echo "guest_test: need --emu BIN --identify BIN --cache DIR (got '$emu' '$identify' '$cache')" >&2; exit 2; }

qemu_dir=${NVMUX_QEMU_DIR:-$(cd "$here/../../.." && pwd)/shared/peers/qemu}
qemu=$qemu_dir/bin/qemu-system-x86_64
if [ ! -x "$qemu" ]; then
  echo "SKIP: no QEMU with the vfio-user client at '$qemu_dir' (set NVMUX_QEMU_DIR to a QEMU >= 10.1 build)"
  exit 77
fi

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

"$here/build-guest.sh" "$cache" || { echo "FAIL: building the guest"; exit 1; }

tmp=$(mktemp -d /tmp/nvmux-guest.XXXXXX)
emu_pid= qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  if [ -n "$emu_pid" ]; then
    kill -TERM "$emu_pid" 2>/dev/null
    wait "$emu_pid" 2>/dev/null
  fi
  if [ "${NVMUX_GUEST_KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

dir=$tmp/emu
# Two formats: 512-byte and 4 KiB blocks, different sizes so a mix-up shows.
ns1_bytes=$((192 << 20)) ns2_bytes=$((256 << 20))
echo "RUN: $emu --socket $dir --ns size=${ns1_bytes},lbads=512 --ns size=${ns2_bytes},lbads=4096 --serial NVMUXGUEST01"
"$emu" --socket "$dir" --ns size=${ns1_bytes},lbads=512 --ns size=${ns2_bytes},lbads=4096 --serial NVMUXGUEST01 \
  >"$tmp/emu.log" 2>&1 &
emu_pid=$!
for _ in $(seq 100); do [ -S "$dir/cntrl" ] && [ -S "$dir/control" ] && break; sleep 0.1; done
[ -S "$dir/cntrl" ] || { cat "$tmp/emu.log"; echo "FAIL: nvmux-emu did not start"; exit 1; }

control() {  # one control-socket command; prints the reply line
  if command -v socat >/dev/null; then
    echo "$1" | socat -t 5 - "UNIX-CONNECT:$dir/control"
  else
    python3 -c 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); s.sendall((sys.argv[2]+"\n").encode())
b=b""
while not b.endswith(b"\n"):
    c=s.recv(4096)
    if not c: break
    b+=c
print(b.decode().strip())' "$dir/control" "$1"
  fi
}
field() { sed -n "s/^ *$1: *//p" "$2" | head -1 | sed 's/ *$//'; }

# What nvmux-identify prints for this emulator (one client at a time: before the guest).
run_identify() {  # $1: output file
  echo "RUN: $identify -r 'trtype:vfiouser traddr:$dir'"
  "$identify" -r "trtype:vfiouser traddr:$dir" >"$1" 2>&1
}
# After a client went: the emulator serves a new one and holds nothing of the old.
check_survived() {  # $1: what happened
  local st
  if run_identify "$tmp/identify.after"; then
    pass "after $1: nvmux-identify succeeds"
  else
    fail "after $1: nvmux-identify fails:"; cat "$tmp/identify.after"
  fi
  kill -0 "$emu_pid" 2>/dev/null || fail "after $1: nvmux-emu is gone"
  st=$(control status)
  echo "     status: $st"
  case "$st" in
    "ok removed=0 "*"dma_maps=0 fdless=0 msix_fds=0 "*) pass "after $1: status shows no DMA mappings or interrupt fds left" ;;
    *) fail "after $1: status shows leaked state: $st" ;;
  esac
}

run_identify "$tmp/identify.txt" || { cat "$tmp/identify.txt"; echo "FAIL: nvmux-identify before the guest"; exit 1; }
id_model=$(field 'Model Number' "$tmp/identify.txt")
id_serial=$(field 'Serial Number' "$tmp/identify.txt")
id_fw=$(field 'Firmware Version' "$tmp/identify.txt")
echo "     nvmux-identify: model='$id_model' serial='$id_serial' firmware='$id_fw'"

qemu_cmd=("$qemu" -L "$qemu_dir/share/qemu" -accel tcg -machine q35 -smp 2 -m 512M
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem
  -device "{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"$dir/cntrl\",\"type\":\"unix\"}}"
  -kernel "$cache/vmlinux" -initrd "$cache/initramfs.cpio.gz"
  -display none -nodefaults -no-reboot)

boot() {  # $1: mode; starts QEMU in the background
  serial=$tmp/serial-$1.log qemu_log=$tmp/qemu-$1.log
  : >"$serial"
  echo "RUN: ${qemu_cmd[*]} -serial file:$serial -append 'console=ttyS0 quiet panic=-1 nvmux.mode=$1'"
  boot_start=$(date +%s.%N)
  "${qemu_cmd[@]}" -serial "file:$serial" -append "console=ttyS0 quiet panic=-1 nvmux.mode=$1" >"$qemu_log" 2>&1 &
  qemu_pid=$!
}
since() { echo "$(date +%s.%N) $boot_start" | awk '{printf "%.1f", $1 - $2}'; }
show_guest() {
  echo "----- guest serial log -----"; cat "$serial"
  echo "----- qemu -----"; cat "$qemu_log"
  echo "----- nvmux-emu -----"; tail -50 "$tmp/emu.log"
}
result() { sed -n "s/^GUEST-RESULT .*\\b$1=\\([^ ]*\\).*/\\1/p" "$serial" | tr -d '\r' | head -1; }
# The whole rest of the line; Identify's ASCII fields are space-padded and
# sysfs shows the padding: trailing spaces are dropped, as nvmux-identify does.
result_line() { sed -n "s/^GUEST-RESULT $1=//p" "$serial" | tr -d '\r' | head -1 | sed 's/ *$//'; }
expect() {  # key expected description
  local got
  got=$(result "$1")
  if [ "$got" = "$2" ]; then pass "$3 ($1=$got)"; else fail "$3: $1='$got', expected '$2'"; fi
}

# 1. The full check, ending in a clean shutdown (sync; poweroff -f).
boot check
deadline=$((SECONDS + 240))
while kill -0 "$qemu_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
if kill -0 "$qemu_pid" 2>/dev/null; then
  fail "the guest did not finish within 240 s"
  kill -9 "$qemu_pid"
fi
wait "$qemu_pid"; qemu_rc=$?; qemu_pid=
echo "     guest ran $(since) s (QEMU exit $qemu_rc); in-guest uptime: booted $(result uptime) s," \
  "driver live at $(result attach_uptime) s"
expect booted 1 "the guest booted"
expect attach_state live "the nvme driver attached"
[ "$(result_line model)" = "$id_model" ] && pass "model '$id_model' as nvmux-identify" ||
  fail "model: guest '$(result_line model)', nvmux-identify '$id_model'"
[ "$(result_line serial)" = "$id_serial" ] && pass "serial '$id_serial' as nvmux-identify" ||
  fail "serial: guest '$(result_line serial)', nvmux-identify '$id_serial'"
[ "$(result_line firmware_rev)" = "$id_fw" ] && pass "firmware '$id_fw' as nvmux-identify" ||
  fail "firmware: guest '$(result_line firmware_rev)', nvmux-identify '$id_fw'"
expect namespaces "nvme0n1" "namespace list starts with nvme0n1"
[ "$(result_line namespaces)" = "nvme0n1 nvme0n2" ] && pass "both namespaces appear" ||
  fail "namespaces: '$(result_line namespaces)', expected 'nvme0n1 nvme0n2'"
expect ns1.sectors $((ns1_bytes / 512)) "namespace 1 size"
expect ns1.lbs 512 "namespace 1 logical block size"
expect ns2.sectors $((ns2_bytes / 512)) "namespace 2 size"
expect ns2.lbs 4096 "namespace 2 logical block size"
expect ns1.data ok "namespace 1 data read back equal after drop_caches"
expect ns2.data ok "namespace 2 data read back equal after drop_caches"
expect reset_controller ok "controller reset from the driver (reset_controller), data still there"
expect reset_pci ok "PCI function reset, data still there"
expect ns1.fs ok "ext2 made, mounted, file written and read back on namespace 1"
expect ns2.fs ok "ext2 made, mounted, file written and read back on namespace 2"
vectors=$(result msix_vectors) interrupts=$(result msix_interrupts)
# -smp 2: the admin queue and two I/O queues, each with its own vector.
[ "${vectors:-0}" -ge 3 ] && [ "${interrupts:-0}" -gt 50 ] &&
  pass "MSI-X: $vectors vectors, $interrupts interrupts (SET_IRQS eventfds)" ||
  fail "MSI-X: msix_vectors='$vectors' (>= 3 expected), msix_interrupts='$interrupts' (> 50 expected)"
expect errors_in_dmesg 0 "no nvme errors, timeouts or aborts in the guest's kernel log"
expect done 1 "the guest ran to its clean shutdown"
[ "$qemu_rc" = 0 ] && pass "QEMU exited 0 after poweroff" || fail "QEMU exited $qemu_rc"
[ $failures = 0 ] || show_guest
check_survived "the guest's clean shutdown"

# 2. A guest killed (SIGKILL of QEMU) in the middle of I/O.
failures_before=$failures
boot stress
deadline=$((SECONDS + 240))
until [ "$(grep -c '^GUEST-RESULT stress_rounds=' "$serial")" -ge 2 ] || [ $SECONDS -ge $deadline ] ||
      ! kill -0 "$qemu_pid" 2>/dev/null; do
  sleep 0.2
done
if [ "$(grep -c '^GUEST-RESULT stress_rounds=' "$serial")" -ge 2 ]; then
  pass "the guest does I/O in a loop (after $(since) s)"
else
  fail "the stress guest never got its I/O going"
fi
kill -9 "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=
echo "     killed QEMU (SIGKILL) mid-I/O"
[ $failures = $failures_before ] || show_guest
check_survived "a guest killed mid-I/O"

if ! kill -0 "$emu_pid" 2>/dev/null; then
  fail "nvmux-emu died"
fi
kill -TERM "$emu_pid"; wait "$emu_pid"; emu_rc=$?; emu_pid=
[ $emu_rc = 0 ] && pass "nvmux-emu stops cleanly (exit 0)" || fail "nvmux-emu exit $emu_rc"
if [ $failures != 0 ]; then
  echo "----- nvmux-emu log -----"; cat "$tmp/emu.log"
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
