#!/bin/sh
# /init of the pcie test guest (busybox; pcie_test.sh appends it, nvmux's
# programs and their libraries to the interop guest's initramfs). Two QEMU
# NVMe controllers at 0000:00:04.0 (namespaces of 512 B and 4 KiB blocks) and
# 0000:00:05.0; an intel-iommu (intel_iommu=on iommu=pt). Prints one
# `GUEST-RESULT key=value` line per fact for the host to assert, GUEST-RUN
# lines for what it runs, then powers off.
. /lib/nvmux-guest.sh  # mounts, result/run/finish, modules (guest-common.sh)
A=0000:00:04.0 B=0000:00:05.0
dev=/sys/bus/pci/devices

# Waits (up to 60 s) until nvmux-perf's output says its workers run: it
# holds the controller then.
wait_running() {
  i=0
  while [ $i -lt 600 ] && ! grep -q 'Launching workers' "$1"; do sleep 0.1; i=$((i + 1)); done
}

# 1. The kernel's nvme driver owns both controllers: what it reads.
wait_nvme() {  # bdf: waits for its nvme controller to be live and its namespaces to appear
  i=0
  while [ $i -lt 300 ]; do
    c=$(ls -d $dev/$1/nvme/nvme* 2>/dev/null | head -1)
    [ -n "$c" ] && [ "$(cat $c/state 2>/dev/null)" = live ] && ls $c | grep -q 'n1$' && { basename $c; return 0; }
    sleep 0.1; i=$((i + 1))
  done
  return 1
}
ca=$(wait_nvme $A) || { result kernel_a=absent; dmesg | grep -i -e nvme -e iommu | tail -20; finish; }
wait_nvme $B >/dev/null || result kernel_b=absent
result iommu_groups=$(ls /sys/kernel/iommu_groups | wc -l)
k_model=$(sed 's/ *$//' $dev/$A/nvme/$ca/model)
k_serial=$(sed 's/ *$//' $dev/$A/nvme/$ca/serial)
k_fw=$(sed 's/ *$//' $dev/$A/nvme/$ca/firmware_rev)
k_ns=""
for n in $(ls -d $dev/$A/nvme/$ca/${ca}n* | sort); do
  b=$(basename $n)
  k_ns="$k_ns $(( $(cat /sys/block/$b/size) * 512 / $(cat /sys/block/$b/queue/logical_block_size) ))"
done
result kernel_ns_blocks="$(echo $k_ns | tr ' ' ,)"
blk=$(ls -d $dev/$A/nvme/$ca/${ca}n1 | xargs basename)  # the 512 B namespace of A, for the data check

# 2. scripts/setup.sh: a mounted namespace is refused; config binds A only.
mkdir -p /mnt
bblk=$(ls -d $dev/$B/nvme/nvme*/nvme*n1 | head -1 | xargs basename)
run mke2fs -q -b 4096 /dev/$bblk >/tmp/mkfs.out 2>&1 || cat /tmp/mkfs.out
run mount -t ext2 /dev/$bblk /mnt
HUGEMEM=256 PCI_ALLOWED=$B setup.sh config >/tmp/cfg.out 2>&1
cat /tmp/cfg.out
result setup_refuses_mounted=$(grep -q "in use (/dev/$bblk is mounted" /tmp/cfg.out && echo ok || echo no)
result b_driver_after_refusal=$(basename $(readlink $dev/$B/driver))
umount /mnt
run setup.sh status
HUGEMEM=256 PCI_ALLOWED=$A run setup.sh config
result a_driver=$(basename $(readlink $dev/$A/driver 2>/dev/null) 2>/dev/null)
run setup.sh status

# 3. nvmux-identify over pcie equals the kernel's view.
run nvmux-identify -r "trtype:PCIe traddr:00:04.0" >/tmp/id.txt 2>&1
result identify_rc=$?
grep -v '^$' /tmp/id.txt | head -40
field() { sed -n "s/^ *$1: *//p" /tmp/id.txt | head -1 | sed 's/ *$//'; }
[ "$(field 'Model Number')" = "$k_model" ] && result model=ok || result model="nvmux:'$(field 'Model Number')'/kernel:'$k_model'"
[ "$(field 'Serial Number')" = "$k_serial" ] && result serial=ok || result serial="nvmux:'$(field 'Serial Number')'/kernel:'$k_serial'"
[ "$(field 'Firmware Version')" = "$k_fw" ] && result firmware=ok || result firmware="nvmux:'$(field 'Firmware Version')'/kernel:'$k_fw'"
result nvmux_ns_blocks="$(sed -n 's/^ *Namespace Size (in LBAs): *\([0-9]*\).*/\1/p' /tmp/id.txt | tr '\n' ',' | sed 's/,$//')"

# 4. Bad input: each a clear error.
nvmux-identify -r "trtype:pcie traddr:0000:00:09.0" >/tmp/e1 2>&1
result err_absent=$(grep -q '0000:00:09.0 does not exist' /tmp/e1 && echo ok || { cat /tmp/e1; echo no; })
nvmux-identify -r "trtype:pcie traddr:$B" >/tmp/e2 2>&1
result err_kernel_driver=$(grep -q "kernel's nvme driver" /tmp/e2 && grep -q 'setup.sh config' /tmp/e2 && echo ok || { cat /tmp/e2; echo no; })

# 5. nvmux-perf --verify: 1 MiB written sequentially, then read and checked,
# the SQs in A's Controller Memory Buffer (--use-cmb-sqs; nvmux-perf says
# where each SQ went).
cmb_sq() {  # files...: "yes" when each says its SQs are in the CMB and none in host memory
  for f in "$@"; do
    grep -q 'SQ in the CMB at controller address' "$f" && ! grep -q 'SQ in host memory' "$f" || { echo no; return; }
  done
  echo yes
}
run nvmux-perf -r "trtype:pcie traddr:$A ns:1" -q 4 -o 4k -w write -t 30 -d 256 --lba-range 0:2048 --verify --no-live \
  --use-cmb-sqs >/tmp/pw 2>&1
result perf_write_rc=$?; grep 'SQ in' /tmp/pw; tail -5 /tmp/pw
# While one process drives A, a second is refused with a clear error.
nvmux-perf -r "trtype:pcie traddr:$A ns:1" -q 4 -o 4k -w read -t 5 --lba-range 0:2048 --verify --no-live \
  --use-cmb-sqs >/tmp/pr 2>&1 &
perf_pid=$!
wait_running /tmp/pr
nvmux-identify -r "trtype:pcie traddr:$A" >/tmp/e3 2>&1
result err_in_use=$(grep -q 'in use by another process' /tmp/e3 && echo ok || { cat /tmp/e3; echo no; })
wait $perf_pid
result perf_read_rc=$?; tail -5 /tmp/pr
result cmb_vfio=$(cmb_sq /tmp/pw /tmp/pr)

# 6. A group: nvmuxd owns the controller, two secondaries do verified I/O
# on their own ranges; one is killed with SIGKILL; nvmuxd is killed with
# SIGKILL while a third runs, and a restarted nvmuxd takes the group over.
show() {  # file rc: the whole output when it failed, else its summary
  if [ "$2" = 0 ]; then tail -2 "$1"; else grep -v '^ *$' "$1" | tail -25; fi
}
wait_ready() {  # log file: nvmuxd prints "ready" once it serves
  i=0
  while [ $i -lt 600 ]; do grep -q ready "$1" && return 0; sleep 0.1; i=$((i + 1)); done
  cat "$1"; return 1
}
sec_bg() {  # out lba-start seconds (group $grp, default 1): both namespaces (a group names controllers
  # without ns), 1024 blocks of each from lba-start (below the 4 KiB namespace's 16384).
  # Queue depth 1: a read racing a write of the same block may see it torn
  # (QEMU copies through the host's page cache), which --verify reports.
  # In the background, from this shell: $! is nvmux-perf itself, so a
  # kill -9 of it kills the secondary (not a subshell around it).
  nvmux-perf -i ${grp:-1} -r "trtype:pcie traddr:$A" -q 1 -o 4k -w randrw -M 50 -t $3 --lba-range $2:1024 --verify \
    --no-live --use-cmb-sqs >$1 2>&1 &
}
sec() { sec_bg "$@"; wait $!; }  # the same in the foreground; its exit status
# nvmuxd enables A's CMB (--use-cmb-sqs); the secondaries' SQs live there,
# each queue id's share of it (a killed secondary's id and share reaped).
nvmuxd -i 1 --use-cmb-sqs -r "trtype:pcie traddr:$A" >/tmp/d1 2>&1 &
d1=$!
if wait_ready /tmp/d1; then
  result group_primary=ready
  sec_bg /tmp/s1 8192 6; s1=$!
  sec_bg /tmp/s2 9216 30; s2=$!
  wait_running /tmp/s2; sleep 1
  kill -9 $s2; wait $s2 2>/dev/null
  wait $s1; rc=$?; result group_secondary_rc=$rc; show /tmp/s1 $rc
  sec /tmp/s3 10240 2; rc=$?; result group_after_kill_rc=$rc; show /tmp/s3 $rc
  sec_bg /tmp/s4 11264 12; s4=$!
  wait_running /tmp/s4; sleep 1
  kill -9 $d1; wait $d1 2>/dev/null
  nvmuxd -i 1 --use-cmb-sqs -r "trtype:pcie traddr:$A" >/tmp/d2 2>&1 &
  d2=$!
  wait_ready /tmp/d2 && result group_restart=ready || result group_restart=no
  result group_adopted=$(grep -q "adopted trtype:pcie traddr:$A" /tmp/d2 && echo yes || echo no)
  wait $s4; rc=$?; result group_through_takeover_rc=$rc; show /tmp/s4 $rc
  sec /tmp/s5 12288 2; rc=$?; result group_after_takeover_rc=$rc; show /tmp/s5 $rc
  grep -h 'SQ in' /tmp/s1 /tmp/s3 /tmp/s4 /tmp/s5
  result group_cmb=$(cmb_sq /tmp/s1 /tmp/s3 /tmp/s4 /tmp/s5)
  kill -TERM $d2; wait $d2; result group_primary_exit=$?
  echo "--- nvmuxd (first)"; tail -15 /tmp/d1; echo "--- nvmuxd (restarted)"; tail -15 /tmp/d2
else
  result group_primary=no
  kill -9 $d1 2>/dev/null
fi

# 7. uio_pci_generic (IOVA = physical addresses, iommu=pt): the same
# controller, 8 MiB in 128 KiB I/Os (PRPs across hugepages) written and read back.
PCI_ALLOWED=$A run setup.sh reset
wait_nvme $A >/dev/null || result kernel_between=absent
DRIVER_OVERRIDE=uio_pci_generic HUGEMEM=256 PCI_ALLOWED=$A run setup.sh config
result uio_driver=$(basename $(readlink $dev/$A/driver 2>/dev/null) 2>/dev/null)
run nvmux-identify -r "trtype:pcie traddr:$A" >/tmp/id2.txt 2>&1
result uio_identify_rc=$?
[ "$(sed -n 's/^ *Serial Number: *//p' /tmp/id2.txt | head -1 | sed 's/ *$//')" = "$k_serial" ] && result uio_serial=ok ||
  { head -20 /tmp/id2.txt; result uio_serial=no; }
run nvmux-perf -r "trtype:pcie traddr:$A ns:1" -q 8 -o 128k -w write -t 60 -d 64 --lba-range 4096:16384 --verify --no-live \
  --use-cmb-sqs >/tmp/uw 2>&1
result uio_write_rc=$?; tail -5 /tmp/uw
nvmux-perf -r "trtype:pcie traddr:$A ns:1" -q 8 -o 128k -w read -t 5 --lba-range 4096:16384 --verify --no-live \
  --use-cmb-sqs >/tmp/ur 2>&1 &
perf_pid=$!
wait_running /tmp/ur
nvmux-identify -r "trtype:pcie traddr:$A" >/tmp/e4 2>&1
result uio_err_in_use=$(grep -q 'in use by another process' /tmp/e4 && echo ok || { cat /tmp/e4; echo no; })
wait $perf_pid
result uio_read_rc=$?; tail -5 /tmp/ur
result cmb_uio=$(cmb_sq /tmp/uw /tmp/ur)
run nvmux-perf -r "trtype:pcie traddr:$A ns:2" -q 1 -o 16k -w randrw -M 50 -t 2 --verify --no-live >/tmp/u4k 2>&1
result uio_4k_rc=$?; tail -3 /tmp/u4k
# The group over uio (IOVA = PA in every process: the group's DMA pool is
# not physically contiguous, secondaries map BAR0 from nvmuxd's resource0
# fd): two verifying secondaries, one killed with SIGKILL; nvmuxd killed
# with SIGKILL under a third and restarted (it adopts the controller).
# nvmuxd runs without --use-cmb-sqs: the secondaries' --use-cmb-sqs falls
# back to host memory (the CMB is offered by the primary only).
nvmuxd -i 2 -r "trtype:pcie traddr:$A" >/tmp/ud1 2>&1 &
ud1=$!
if wait_ready /tmp/ud1; then
  result uio_group_primary=ready
  grp=2
  sec_bg /tmp/us1 13312 6; us1=$!
  sec_bg /tmp/us2 14336 30; us2=$!
  wait_running /tmp/us2; sleep 1
  kill -9 $us2; wait $us2 2>/dev/null
  wait $us1; rc=$?; result uio_group_secondary_rc=$rc; show /tmp/us1 $rc
  grep -e 'SQ in' -e use_cmb_sqs /tmp/us1
  # Host memory, said per queue pair, with the driver's warning naming why.
  result uio_group_cmb_fallback=$(grep -q 'SQ in host memory' /tmp/us1 && ! grep -q 'SQ in the CMB' /tmp/us1 &&
    grep -q 'use_cmb_sqs: no CMB that can hold SQs is enabled (in a group: nvmuxd --use-cmb-sqs)' /tmp/us1 &&
    echo yes || echo no)
  sec /tmp/us3 15360 2; rc=$?; result uio_group_after_kill_rc=$rc; show /tmp/us3 $rc
  sec_bg /tmp/us4 13312 12; us4=$!
  wait_running /tmp/us4; sleep 1
  kill -9 $ud1; wait $ud1 2>/dev/null
  nvmuxd -i 2 -r "trtype:pcie traddr:$A" >/tmp/ud2 2>&1 &
  ud2=$!
  wait_ready /tmp/ud2 && result uio_group_restart=ready || result uio_group_restart=no
  wait $us4; rc=$?; result uio_group_through_takeover_rc=$rc; show /tmp/us4 $rc
  kill -TERM $ud2; wait $ud2; result uio_group_primary_exit=$?
  echo "--- nvmuxd over uio (first)"; tail -8 /tmp/ud1; echo "--- nvmuxd over uio (restarted)"; tail -8 /tmp/ud2
else
  result uio_group_primary=no
  kill -9 $ud1 2>/dev/null
fi

# 8. Back to the kernel: the blocks nvmux wrote (vfio and uio) are there.
PCI_ALLOWED=$A run setup.sh reset
ca2=$(wait_nvme $A) || { result kernel_again=absent; finish; }
blk=$(ls -d $dev/$A/nvme/$ca2/${ca2}n1 | xargs basename)
ok=0
for lba in 0 1 777 2047 4096 8191 12345 20479; do
  hex=$(dd if=/dev/$blk bs=512 skip=$lba count=1 2>/dev/null | od -An -tx8 -N16 | tr -s ' ')
  [ "$hex" = " 79667678756d766e $(printf '%016x' $lba)" ] && ok=$((ok + 1)) || echo "lba $lba: $hex"
done
result kernel_reads_nvmux_blocks=$ok

# 9. Hot removal under I/O, controllers C and D behind hot-pluggable root
# ports (buses 1 and 2); the host removes each with QEMU's device_del when
# this says so. C on vfio-pci: the kernel asks for the device back (VFIO
# device request) and waits; the driver treats it as gone, nvmux-perf ends
# with an error and closes it, and the removal completes. D on
# uio_pci_generic: the BAR vanishes (SIGBUS caught, if an access faults);
# the process must not die: its I/O fails, it ends with an error.
V=0000:01:00.0 C=0000:02:00.0
if [ -e $dev/$V ]; then
  HUGEMEM=256 PCI_ALLOWED=$V run setup.sh config >/dev/null
  nvmux-perf -r "trtype:pcie traddr:$V" -q 8 -o 4k -w randrw -M 50 -t 120 --no-live >/tmp/hv 2>&1 &
  hv=$!
  wait_running /tmp/hv; sleep 1
  result hotplug_vfio_armed=1
  i=0
  while [ $i -lt 900 ] && kill -0 $hv 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  if kill -0 $hv 2>/dev/null; then result hotplug_vfio_rc=still-running; kill -9 $hv; else wait $hv; result hotplug_vfio_rc=$?; fi
  grep -v '^ *$' /tmp/hv | tail -6
  result hotplug_vfio_request=$(grep -q 'asks for the device back' /tmp/hv && echo yes || echo no)
  i=0
  while [ $i -lt 300 ] && [ -e $dev/$V ]; do sleep 0.1; i=$((i + 1)); done
  [ -e $dev/$V ] && result hotplug_vfio_gone=no || result hotplug_vfio_gone=yes
else
  result hotplug_vfio_rc=absent
fi
result hotplug_bdf=$([ -e $dev/$C ] && echo $C || echo none)
if [ -e $dev/$C ]; then
  DRIVER_OVERRIDE=uio_pci_generic HUGEMEM=256 PCI_ALLOWED=$C run setup.sh config
  nvmux-perf -r "trtype:pcie traddr:$C" -q 8 -o 4k -w randrw -M 50 -t 120 --no-live >/tmp/hp 2>&1 &
  hp=$!
  wait_running /tmp/hp; sleep 1
  result hotplug_armed=1
  i=0
  while [ $i -lt 900 ] && kill -0 $hp 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  if kill -0 $hp 2>/dev/null; then
    result hotplug_perf_rc=still-running; kill -9 $hp
  else
    wait $hp; result hotplug_perf_rc=$?
  fi
  grep -v '^ *$' /tmp/hp | tail -12
  [ -e $dev/$C ] && result hotplug_gone=no || result hotplug_gone=yes
  # How the loss was noticed (reported, not asserted: it races the kernel):
  # the BAR's SIGBUS, config space gone, or memory decoding switched off.
  result hotplug_sigbus_caught=$(grep -q 'SIGBUS caught' /tmp/hp && echo yes || echo no)
  result hotplug_noticed_gone=$(grep -q -e 'SIGBUS caught' -e 'device is gone' /tmp/hp && echo yes || echo no)
  dmesg | grep -i -e pciehp -e "$C" | tail -5
fi

# 10. Hot insertion: nvmuxd serves 'trtype:pcie' (every userspace-bound
# controller, PCI_ALLOWED=N); the host adds controller N behind root port 1
# (QEMU's device_add) when this says so; the kernel's nvme driver takes it,
# setup.sh binds it to vfio-pci, nvmuxd's hotplug polling attaches it, and a
# secondary's verified I/O runs on it.
N=0000:01:00.0
PCI_ALLOWED=$N nvmuxd -i 3 -r "trtype:pcie" >/tmp/nd 2>&1 &
nd=$!
if wait_ready /tmp/nd; then
  result hotadd_armed=1
  i=0
  while [ $i -lt 300 ] && [ ! -e $dev/$N ]; do sleep 0.1; i=$((i + 1)); done
  result hotadd_present=$([ -e $dev/$N ] && echo yes || echo no)
  wait_nvme $N >/dev/null || result hotadd_kernel=absent
  HUGEMEM=256 PCI_ALLOWED=$N run setup.sh config >/dev/null
  i=0
  while [ $i -lt 150 ] && ! grep -q "hotplug: attached trtype:pcie traddr:$N" /tmp/nd; do sleep 0.1; i=$((i + 1)); done
  result hotadd_attached=$(grep -q "hotplug: attached trtype:pcie traddr:$N" /tmp/nd && echo yes || echo no)
  run nvmux-perf -i 3 -r "trtype:pcie traddr:$N" -q 1 -o 4k -w randrw -M 50 -t 2 --lba-range 0:1024 --verify \
    --no-live >/tmp/ns1 2>&1
  rc=$?; result hotadd_io_rc=$rc; show /tmp/ns1 $rc
  # 11. Surprise removal in the group: a secondary's I/O runs on N when the
  # host removes it (device_del). nvmuxd sees the kernel's VFIO device
  # request, its remove callback drops the controller (the group entry is
  # retired), the secondary's outstanding I/O is aborted and it ends with
  # an error; nvmuxd keeps running; the function goes once every process
  # has let go of the VFIO device.
  nvmux-perf -i 3 -r "trtype:pcie traddr:$N" -q 8 -o 4k -w randrw -M 50 -t 120 --no-live >/tmp/ns2 2>&1 &
  ns2=$!
  wait_running /tmp/ns2; sleep 1
  result hotdel_group_armed=1
  i=0
  while [ $i -lt 900 ] && kill -0 $ns2 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  if kill -0 $ns2 2>/dev/null; then result hotdel_secondary_rc=still-running; kill -9 $ns2; else wait $ns2; result hotdel_secondary_rc=$?; fi
  grep -i -e error -e fail /tmp/ns2 | head -6
  # The secondary's driver learnt it from the group (nvmuxd published the
  # loss), failed the controller and ended its I/O with an error.
  result hotdel_secondary_saw_removal=$(grep -q -e 'failed: the connection to the device is gone' \
    -e 'withdrew the controller' /tmp/ns2 && echo yes || echo no)
  i=0
  while [ $i -lt 150 ] && ! grep -q "hotplug: removed trtype:pcie traddr:$N (device gone)" /tmp/nd; do sleep 0.1; i=$((i + 1)); done
  result hotdel_primary_dropped=$(grep -q "hotplug: removed trtype:pcie traddr:$N (device gone)" /tmp/nd && echo yes || echo no)
  i=0
  while [ $i -lt 300 ] && [ -e $dev/$N ]; do sleep 0.1; i=$((i + 1)); done
  result hotdel_group_gone=$([ -e $dev/$N ] && echo no || echo yes)
  result hotdel_primary_alive=$(kill -0 $nd 2>/dev/null && echo yes || echo no)
  kill -TERM $nd; wait $nd; result hotadd_primary_exit=$?
  echo "--- nvmuxd (trtype:pcie)"; tail -6 /tmp/nd
else
  result hotadd_armed=no
  kill -9 $nd 2>/dev/null
fi
finish
