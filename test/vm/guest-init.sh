#!/bin/sh
# /init of the interop guest (busybox). Loads the nvme driver, checks what
# the host's test asks for and prints one `GUEST-RESULT key=value` line per
# fact; the host side (guest_test.sh) asserts them. Kernel command line:
#   nvmux.mode=check   attach, namespaces, data, filesystem, identity; then
#                      sync and poweroff -f (a clean shutdown)
#   nvmux.mode=stress  writes and reads /dev/nvme0n1 in a loop until killed
# Every step prints what it runs (GUEST-RUN lines) so a failure shows where.
. /lib/nvmux-guest.sh  # mounts, result/run/finish, modules (guest-common.sh)
mode=check
for arg in $(cat /proc/cmdline); do
  case "$arg" in nvmux.mode=*) mode=${arg#nvmux.mode=} ;; esac
done

# The driver attaches: nvme0 reaches state live and its namespaces appear.
i=0
while [ $i -lt 300 ]; do
  [ "$(cat /sys/class/nvme/nvme0/state 2>/dev/null)" = live ] && ls /sys/block | grep -q '^nvme0n' && break
  sleep 0.1
  i=$((i + 1))
done
state=$(cat /sys/class/nvme/nvme0/state 2>/dev/null || echo absent)
result attach_state=$state attach_uptime=$(cut -d' ' -f1 /proc/uptime)
if [ "$state" != live ]; then
  dmesg | grep -i nvme
  finish
fi
sleep 0.2  # let the namespace scan settle
result model="$(cat /sys/class/nvme/nvme0/model)"
result serial="$(cat /sys/class/nvme/nvme0/serial)"
result firmware_rev="$(cat /sys/class/nvme/nvme0/firmware_rev)"
result queue_count=$(ls -d /sys/block/nvme0n1/mq/* 2>/dev/null | wc -l)
namespaces=$(ls /sys/block | grep '^nvme0n[0-9]*$' | sort)
result namespaces="$(echo $namespaces)"
for ns in $namespaces; do
  id=${ns#nvme0n}
  result ns$id.sectors=$(cat /sys/block/$ns/size) ns$id.lbs=$(cat /sys/block/$ns/queue/logical_block_size)
done

if [ "$mode" = stress ]; then
  # Writes and reads back 1 MiB at rising offsets, forever: the host kills
  # QEMU while this runs.
  dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
  (n=0; while :; do
     dd if=/tmp/pattern of=/dev/nvme0n1 bs=4096 seek=$((n % 64 * 256)) oflag=direct 2>/dev/null
     dd if=/dev/nvme0n1 of=/dev/null bs=4096 skip=$((n % 64 * 256)) count=256 iflag=direct 2>/dev/null
     n=$((n + 1))
     [ $((n % 8)) = 1 ] && echo "GUEST-RESULT stress_rounds=$n"
   done) &
  sleep 3600
fi

# Data: 1 MiB of a random pattern at the start and at the end of every
# namespace, written with O_DIRECT, read back (O_DIRECT, and through the page
# cache after drop_caches), compared by checksum.
dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
want=$(md5sum </tmp/pattern | cut -d' ' -f1)
for ns in $namespaces; do
  id=${ns#nvme0n}
  blocks4k=$(($(cat /sys/block/$ns/size) / 8))
  ok=1
  for at in 0 $((blocks4k - 256)); do
    run dd if=/tmp/pattern of=/dev/$ns bs=4096 seek=$at oflag=direct 2>/tmp/dd.err || { ok=0; cat /tmp/dd.err; }
    sync
    echo 3 >/proc/sys/vm/drop_caches
    got=$(dd if=/dev/$ns bs=4096 skip=$at count=256 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { ok=0; echo "GUEST-RUN ns$id at 4k block $at: O_DIRECT read $got, wrote $want"; }
    echo 3 >/proc/sys/vm/drop_caches
    got=$(dd if=/dev/$ns bs=4096 skip=$at count=256 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || { ok=0; echo "GUEST-RUN ns$id at 4k block $at: buffered read $got, wrote $want"; }
  done
  result ns$id.data=$([ $ok = 1 ] && echo ok || echo bad)
done

# Resets, each followed by a read of what namespace 1 holds at block 0:
# the driver's controller reset (CC.EN 1 -> 0 -> 1, queues and shadow
# doorbells set up again) and a PCI function reset (QEMU passes it to the
# device as a vfio-user DEVICE_RESET, or as an FLR through config space).
wait_live() {
  i=0
  while [ $i -lt 200 ]; do
    [ "$(cat /sys/class/nvme/nvme0/state 2>/dev/null)" = live ] && [ -b /dev/nvme0n1 ] && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}
want=$(md5sum </tmp/pattern | cut -d' ' -f1)
bdf=$(basename "$(readlink /sys/class/nvme/nvme0/device)")
for kind in controller pci; do
  if [ $kind = controller ]; then
    run sh -c 'echo 1 > /sys/class/nvme/nvme0/reset_controller'
  else
    run sh -c "echo 1 > /sys/bus/pci/devices/$bdf/reset"
  fi
  sleep 0.3
  if wait_live; then
    echo 3 >/proc/sys/vm/drop_caches
    got=$(dd if=/dev/nvme0n1 bs=4096 count=256 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    result reset_$kind=$([ "$got" = "$want" ] && echo ok || echo data-differs)
  else
    result reset_$kind=not-live-$(cat /sys/class/nvme/nvme0/state 2>/dev/null)
  fi
done

# Filesystem: ext2 (busybox mke2fs, 4 KiB blocks fit both formats) on every
# namespace, a 2 MiB file written, unmounted, caches dropped, remounted, read.
dd if=/dev/urandom of=/tmp/file bs=4096 count=512 2>/dev/null
want=$(md5sum </tmp/file | cut -d' ' -f1)
for ns in $namespaces; do
  id=${ns#nvme0n}
  ok=1
  run mke2fs -q -b 4096 /dev/$ns >/tmp/mkfs.out 2>&1 || { ok=0; cat /tmp/mkfs.out; }
  run mount -t ext2 /dev/$ns /mnt || ok=0
  cp /tmp/file /mnt/file && sync || ok=0
  umount /mnt || ok=0
  echo 3 >/proc/sys/vm/drop_caches
  run mount -t ext2 /dev/$ns /mnt || ok=0
  got=$(md5sum </mnt/file 2>/dev/null | cut -d' ' -f1)
  [ "$got" = "$want" ] || { ok=0; echo "GUEST-RUN ns$id file read $got, wrote $want"; }
  umount /mnt || ok=0
  result ns$id.fs=$([ $ok = 1 ] && echo ok || echo bad)
done
# Errors or timeouts the driver logged (the resets asked for above log none).
# Interrupts: MSI-X vectors the driver uses (admin + one per I/O queue) and
# how many interrupts they took (the data above completed through them).
# /proc/interrupts names MSI-X vectors "PCI-MSI" too; the function offers
# only MSI-X (no MSI capability), so these are MSI-X vectors.
result msix_vectors=$(grep -c 'PCI-MSI.*nvme0q' /proc/interrupts) \
  msix_interrupts=$(grep 'PCI-MSI.*nvme0q' /proc/interrupts |
    awk '{for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i} END {print n + 0}')
grep 'nvme0q' /proc/interrupts
result errors_in_dmesg=$(dmesg | grep -ci 'nvme.*\(error\|timeout\|failed\|abort\)')
dmesg | grep -i 'nvme'
finish
