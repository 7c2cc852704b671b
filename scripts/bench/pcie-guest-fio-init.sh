#!/bin/sh
# /init of the pcie benchmark guest (scripts/bench/pcie-guest-fio.sh appends
# it, nvmux-perf, setup.sh and fio with their libraries to the test guest).
# One QEMU NVMe controller at 0000:00:04.0; in each run, 4 KiB random reads
# at QD 1 and QD 32 by fio (io_uring, O_DIRECT on /dev/nvme0n1, the kernel's
# nvme driver), then nvmux-perf on the same controller bound to vfio-pci (the
# emulated intel-iommu translates its DMA) and to uio_pci_generic (IOVA =
# physical address, no translation, as the kernel's iommu=pt). fio runs
# twice: completions by interrupt (the default) and by polling (--hipri, on
# a poll queue: nvme is reloaded with poll_queues=1), the closer match to
# nvmux-perf, which polls. Kernel
# command line: nvmux.runs=N nvmux.seconds=S. Prints
#   GUEST-RESULT bench run=R who=fio|fiopoll|vfio|uio qd=Q iops=X
. /lib/nvmux-guest.sh  # mounts, result/run/finish, modules (test/vm/guest-common.sh)
runs=3 seconds=5
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    nvmux.runs=*) runs=${arg#nvmux.runs=} ;;
    nvmux.seconds=*) seconds=${arg#nvmux.seconds=} ;;
  esac
done
A=0000:00:04.0
dev=/sys/bus/pci/devices
wait_nvme() {  # until the kernel's namespace of A is there
  i=0
  while [ $i -lt 300 ]; do
    b=$(ls -d $dev/$A/nvme/nvme*/nvme*n1 2>/dev/null | head -1)
    [ -n "$b" ] && [ -b /dev/$(basename $b) ] && { basename $b; return 0; }
    sleep 0.1; i=$((i + 1))
  done
  return 1
}
bench() {  # run who qd AWK-ARGS...: the IOPS figure /tmp/out holds (else the output)
  r=$1 who=$2 qd=$3
  shift 3
  iops=$(awk "$@" /tmp/out)
  if [ -n "$iops" ]; then result bench run=$r who=$who qd=$qd iops=$iops; else cat /tmp/out; result bench_failed=$who/$qd; fi
}
out() {  # CMD...: prints what runs, its output into /tmp/out
  echo "GUEST-RUN $*"
  "$@" >/tmp/out 2>&1
}
nvmux_runs() {  # run who: nvmux-perf at QD 1 and 32 on A, bound as setup.sh left it
  for qd in 1 32; do
    out nvmux-perf -r "trtype:pcie traddr:$A ns:1" -q $qd -o 4k -w randread -t $seconds --no-live
    bench $1 $2 $qd '/^Total/ {print $3}'
  done
}
run rmmod nvme
run insmod /lib/modules/nvme.ko poll_queues=1 || result bench_failed=nvme-poll-queues
for r in $(seq $runs); do
  blk=$(wait_nvme) || { result bench_failed=no-kernel-namespace; finish; }
  [ $r = 1 ] && result io_poll=$(cat /sys/block/$blk/queue/io_poll)  # 1: --hipri really polls
  for qd in 1 32; do
    out fio --name=randread --filename=/dev/$blk --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
      --iodepth=$qd --time_based --runtime=$seconds --thread --minimal
    bench $r fio $qd -F';' '/^3;/ {print $8}'
    out fio --name=randread --filename=/dev/$blk --ioengine=io_uring --hipri --direct=1 --rw=randread --bs=4k \
      --iodepth=$qd --time_based --runtime=$seconds --thread --minimal
    bench $r fiopoll $qd -F';' '/^3;/ {print $8}'
  done
  HUGEMEM=256 PCI_ALLOWED=$A setup.sh config >/dev/null 2>&1 || result bench_failed=setup-vfio
  nvmux_runs $r vfio
  PCI_ALLOWED=$A setup.sh reset >/dev/null 2>&1
  wait_nvme >/dev/null
  DRIVER_OVERRIDE=uio_pci_generic HUGEMEM=256 PCI_ALLOWED=$A setup.sh config >/dev/null 2>&1 || result bench_failed=setup-uio
  nvmux_runs $r uio
  PCI_ALLOWED=$A setup.sh reset >/dev/null 2>&1
done
finish
