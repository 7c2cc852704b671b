#!/bin/bash
# The pcie transport in a QEMU TCG guest: two emulated NVMe controllers
# (QEMU's -device nvme) behind an intel-iommu; the guest binds one to vfio-pci
# with scripts/setup.sh and runs nvmux-identify and nvmux-perf --verify on it,
# compares with the kernel nvme driver's view, checks the clear errors, then
# gives the controller back to nvme and reads nvmux's blocks through it.
# See test/vm/README.md.
#
# Usage: pcie_test.sh --identify BIN --perf BIN --nvmuxd BIN --cache DIR
#   (the build's programs; CACHE_DIR as build-guest.sh)
# Env:   NVMUX_QEMU_DIR (bin/qemu-system-x86_64; default ../shared/peers/qemu
#        beside the tree, else qemu-system-x86_64 on PATH); NVMUX_GUEST_KEEP=1.
# Exit:  0 pass, 1 fail, 77 skipped (no QEMU).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
identify= perf= nvmuxd= cache=
while [ $# -gt 0 ]; do
  case "$1" in
    --identify) identify=$2; shift 2 ;;
    --perf) perf=$2; shift 2 ;;
    --nvmuxd) nvmuxd=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) echo "pcie_test: unknown argument '$1' (allowed: --identify BIN --perf BIN --nvmuxd BIN --cache DIR)" >&2
       exit 2 ;;
  esac
done
[ -x "$identify" ] && [ -x "$perf" ] && [ -x "$nvmuxd" ] && [ -n "$cache" ] ||
  { echo "pcie_test: need --identify BIN --perf BIN --nvmuxd BIN --cache DIR" >&2; exit 2; }

. "$here/vm-lib.sh"
vm_find_qemu "$root"

"$here/build-guest.sh" "$cache" || { echo "FAIL: building the guest"; exit 1; }

tmp=$(mktemp -d /tmp/nvmux-pcie-guest.XXXXXX)
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  if [ "${NVMUX_GUEST_KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# This test's /init, nvmux's programs and setup.sh over the cached guest.
vm_initramfs "$cache" "$here/pcie-guest-init.sh" "$tmp/initramfs.cpio.gz" "$identify" "$perf" "$nvmuxd" \
  "$root/scripts/setup.sh"

# Controller A (00:04.0): namespaces of 512 B and 4 KiB blocks; B (00:05.0): one.
truncate -s 64M "$tmp/a1.img" "$tmp/a2.img" "$tmp/b1.img" "$tmp/c1.img" "$tmp/v1.img" "$tmp/n1.img"
serial=$tmp/serial.log
# aw-bits=48: nvmux's DMA addresses are its virtual addresses (IOVA = VA,
# from --base-virtaddr 0x200000000000, 45 bits); Debian's QEMU 7.2 defaults
# to a 39-bit IOMMU, whose VFIO DMA maps then fail with EINVAL.
qemu_cmd=("$qemu" "${qemu_share[@]}" -accel tcg,thread=single -machine q35 -smp 2 -m 1G -cpu max
  -device intel-iommu,intremap=on,aw-bits=48
  -drive "file=$tmp/a1.img,if=none,id=a1,format=raw" -drive "file=$tmp/a2.img,if=none,id=a2,format=raw"
  -drive "file=$tmp/b1.img,if=none,id=b1,format=raw"
  -device nvme,id=ca,serial=NVMUXPCIEA,addr=0x4,cmb_size_mb=8 -device nvme-ns,bus=ca,drive=a1,nsid=1,logical_block_size=512
  -device nvme-ns,bus=ca,drive=a2,nsid=2,logical_block_size=4096,physical_block_size=4096
  -device nvme,id=cb,serial=NVMUXPCIEB,addr=0x5 -device nvme-ns,bus=cb,drive=b1,nsid=1
  -drive "file=$tmp/c1.img,if=none,id=c1,format=raw"
  -drive "file=$tmp/v1.img,if=none,id=v1,format=raw"
  -drive "file=$tmp/n1.img,if=none,id=n1,format=raw"
  -device pcie-root-port,id=rp1,chassis=1,slot=1,addr=0x6
  -device nvme,id=cv,serial=NVMUXPCIEV,bus=rp1 -device nvme-ns,bus=cv,drive=v1,nsid=1
  -device pcie-root-port,id=rp2,chassis=2,slot=2,addr=0x7
  -device nvme,id=cc,serial=NVMUXPCIEC,bus=rp2 -device nvme-ns,bus=cc,drive=c1,nsid=1
  -monitor "unix:$tmp/monitor,server,nowait"
  -kernel "$cache/vmlinux" -initrd "$tmp/initramfs.cpio.gz"
  -append "console=ttyS0 quiet panic=-1 intel_iommu=on iommu=pt no_timer_check"
  -display none -nodefaults -no-reboot -serial "file:$serial")
echo "RUN: ${qemu_cmd[*]}"
start=$SECONDS
"${qemu_cmd[@]}" >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
deadline=$((SECONDS + 600))
unplugged=0 unplugged_vfio=0 added=0 unplugged_group=0
monitor() {  # one HMP command on QEMU's monitor socket
  python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); time.sleep(0.2); s.recv(4096)
s.sendall((sys.argv[2]+"\n").encode()); time.sleep(0.5); print(s.recv(4096).decode(errors="replace").strip())' \
    "$tmp/monitor" "$1"
}
while kill -0 "$qemu_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
  if [ $unplugged_vfio = 0 ] && grep -q '^GUEST-RESULT hotplug_vfio_armed=1' "$serial"; then
    echo "RUN: (QEMU monitor) device_del cv"
    monitor "device_del cv" >/dev/null
    unplugged_vfio=1
  fi
  if [ $added = 0 ] && grep -q '^GUEST-RESULT hotadd_armed=1' "$serial"; then
    echo "RUN: (QEMU monitor) device_add nvme,id=cn,serial=NVMUXPCIEN,bus=rp1,drive=n1"
    monitor "device_add nvme,id=cn,serial=NVMUXPCIEN,bus=rp1,drive=n1" >/dev/null
    added=1
  fi
  if [ $unplugged_group = 0 ] && grep -q '^GUEST-RESULT hotdel_group_armed=1' "$serial"; then
    echo "RUN: (QEMU monitor) device_del cn"
    monitor "device_del cn" | grep -i error
    unplugged_group=1
  fi
  if [ $unplugged = 0 ] && grep -q '^GUEST-RESULT hotplug_armed=1' "$serial"; then
    echo "RUN: (QEMU monitor) device_del cc"
    monitor "device_del cc" >/dev/null
    unplugged=1
  fi
  sleep 0.5
done
if kill -0 "$qemu_pid" 2>/dev/null; then fail "the guest did not finish within 600 s"; kill -9 "$qemu_pid"; fi
wait "$qemu_pid"; qemu_rc=$?; qemu_pid=
echo "     guest ran $((SECONDS - start)) s (QEMU exit $qemu_rc)"

expect booted 1 "the guest booted"
groups=$(result iommu_groups)
[ "${groups:-0}" -gt 0 ] && pass "the IOMMU is on ($groups groups)" || fail "no IOMMU groups in the guest"
expect setup_refuses_mounted ok "setup.sh config refuses a controller whose namespace is mounted"
expect b_driver_after_refusal nvme "the refused controller stays with nvme"
expect a_driver vfio-pci "setup.sh config binds the controller to vfio-pci"
expect identify_rc 0 "nvmux-identify over pcie succeeds"
expect model ok "model as the kernel's nvme driver reads it"
expect serial ok "serial as the kernel's nvme driver reads it"
expect firmware ok "firmware revision as the kernel's nvme driver reads it"
k=$(result kernel_ns_blocks) n=$(result nvmux_ns_blocks)
[ -n "$k" ] && [ "$k" = "$n" ] && pass "namespace sizes as the kernel's ($n blocks)" ||
  fail "namespace sizes: nvmux '$n', kernel '$k'"
expect err_absent ok "a controller that does not exist: clear error"
expect err_kernel_driver ok "a controller bound to nvme: error names the driver and setup.sh config"
expect perf_write_rc 0 "nvmux-perf --verify writes 1 MiB"
expect err_in_use ok "a second process on the same controller: clear error"
expect perf_read_rc 0 "nvmux-perf --verify reads it back and checks it"
expect cmb_vfio yes "vfio: --use-cmb-sqs put every SQ in the controller's CMB (verified I/O above)"
expect group_primary ready "nvmuxd -i 1 serves the vfio-pci controller"
expect group_secondary_rc 0 "a secondary's verified I/O while another secondary is killed (SIGKILL)"
expect group_after_kill_rc 0 "a new secondary after the kill (the dead one reaped)"
expect group_restart ready "nvmuxd killed (SIGKILL) and restarted: takes the group over"
expect group_adopted yes "the new nvmuxd adopted the controller (fds taken from a live secondary)"
expect group_through_takeover_rc 0 "a secondary's verified I/O through nvmuxd's death and takeover"
expect group_after_takeover_rc 0 "a new secondary after the takeover"
expect group_cmb yes "group (nvmuxd --use-cmb-sqs): every secondary's SQ in the CMB, through kill, reap and takeover"
expect group_primary_exit 0 "the new nvmuxd stops cleanly on SIGTERM"
expect uio_driver uio_pci_generic "setup.sh config with DRIVER_OVERRIDE=uio_pci_generic"
expect uio_identify_rc 0 "nvmux-identify over uio_pci_generic (IOVA = PA)"
expect uio_serial ok "its serial as the kernel's"
expect uio_write_rc 0 "nvmux-perf --verify writes 8 MiB in 128 KiB I/Os over uio"
expect uio_err_in_use ok "uio: a second process on the same controller: clear error"
expect uio_read_rc 0 "nvmux-perf --verify reads them back and checks them over uio"
expect cmb_uio yes "uio: --use-cmb-sqs put every SQ in the controller's CMB (verified I/O above)"
expect uio_4k_rc 0 "nvmux-perf --verify randrw on the 4 KiB-block namespace over uio"
expect uio_group_primary ready "nvmuxd -i 2 serves the controller over uio_pci_generic (IOVA = PA)"
expect uio_group_secondary_rc 0 "uio: a secondary's verified I/O while another secondary is killed (SIGKILL)"
expect uio_group_cmb_fallback yes "uio group without nvmuxd --use-cmb-sqs: a secondary's --use-cmb-sqs falls back to host memory"
expect uio_group_after_kill_rc 0 "uio: a new secondary after the kill (the dead one reaped)"
expect uio_group_restart ready "uio: nvmuxd killed (SIGKILL) and restarted: takes the group over"
expect uio_group_through_takeover_rc 0 "uio: a secondary's verified I/O through nvmuxd's death and takeover"
expect uio_group_primary_exit 0 "uio: the new nvmuxd stops cleanly on SIGTERM"
expect kernel_reads_nvmux_blocks 8 "after setup.sh reset the kernel reads nvmux's blocks (magic, LBA)"
rc=$(result hotplug_vfio_rc)
[ -n "$rc" ] && [ "$rc" != still-running ] && [ "$rc" != absent ] && [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] &&
  pass "vfio hot removal: nvmux-perf ends with an error (exit $rc)" ||
  fail "vfio hot removal: nvmux-perf exit '$rc' (expected an error exit < 128)"
expect hotplug_vfio_request yes "vfio hot removal: the driver saw the kernel's device request"
expect hotplug_vfio_gone yes "vfio hot removal completes once nvmux let go of the device"
h=$(result hotplug_bdf)
[ -n "$h" ] && [ "$h" != none ] && pass "the hot-pluggable controller is at $h" || fail "no controller behind the root port"
expect hotplug_gone yes "device_del removed the controller under nvmux-perf"
expect hotplug_noticed_gone yes "nvmux-perf's driver noticed the device was gone (not a controller fault)"
echo "     the loss was noticed by a caught SIGBUS: $(result hotplug_sigbus_caught)"
rc=$(result hotplug_perf_rc)
[ -n "$rc" ] && [ "$rc" != still-running ] && [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] &&
  pass "surprise removal: nvmux-perf ends with an error (exit $rc), not killed by SIGBUS" ||
  fail "surprise removal: nvmux-perf exit '$rc' (expected an error exit < 128)"
expect hotadd_armed 1 "nvmuxd -r trtype:pcie starts with no controller bound yet"
expect hotadd_present yes "device_add: the new controller appeared in the guest"
expect hotadd_attached yes "nvmuxd's hotplug polling attached it once setup.sh bound it to vfio-pci"
expect hotadd_io_rc 0 "a secondary's verified I/O on the hot-added controller"
rc=$(result hotdel_secondary_rc)
[ -n "$rc" ] && [ "$rc" != still-running ] && [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] &&
  pass "group surprise removal: the secondary ends with an error (exit $rc), not killed" ||
  fail "group surprise removal: secondary exit '$rc' (expected an error exit < 128)"
expect hotdel_secondary_saw_removal yes "group surprise removal: the secondary's driver failed the controller (the group was told)"
expect hotdel_primary_dropped yes "group surprise removal: nvmuxd's remove callback dropped the controller (device gone)"
expect hotdel_group_gone yes "group surprise removal: the function went once the group let go of it"
expect hotdel_primary_alive yes "group surprise removal: nvmuxd survives"
expect hotadd_primary_exit 0 "that nvmuxd stops cleanly on SIGTERM"
expect done 1 "the guest ran to its end"
if [ $failures != 0 ]; then
  vm_logs
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
