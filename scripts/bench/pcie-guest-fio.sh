#!/usr/bin/env bash
# nvmux-perf against the kernel (fio, io_uring, O_DIRECT on /dev/nvme0n1) on
# the same QEMU NVMe controller in the same TCG guest boot (issue 11): 4 KiB
# random reads at QD 1 and QD 32, fio's completions by interrupt and by
# polling (--hipri), nvmux on vfio-pci (intel-iommu) and on uio_pci_generic,
# all taking turns within each run. Prints the median IOPS
# of each and the ratios nvmux / fio. TCG timings mean nothing absolute: only
# the ratios within one boot do. Not part of CI (a guest is CPU-heavy).
#
#   scripts/bench/pcie-guest-fio.sh [--short] [BUILD_DIR] [RUNS]
#     default 3 runs x 5 s; --short: 1 x 2 s. fio: NVMUX_FIO (default
#     /usr/bin/fio), copied into the guest with the libraries ldd names.
#     QEMU as test/vm (NVMUX_QEMU_DIR, default ../shared/peers/qemu, else PATH).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3 seconds=5 build=$root/build positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=2; shift ;;
    -*) echo "pcie-guest-fio.sh: unknown option '$1' (allowed: --short, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && build=${positional[0]}
[ ${#positional[@]} -ge 2 ] && runs=${positional[1]}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "pcie-guest-fio.sh: RUNS '$runs' must be a positive number" >&2; exit 2; }
perf=$build/tools/perf/nvmux-perf
[ -x "$perf" ] || { echo "pcie-guest-fio.sh: $perf is missing: build first (cmake --build $build)" >&2; exit 2; }
fio=${NVMUX_FIO:-/usr/bin/fio}
[ -x "$fio" ] || { echo "pcie-guest-fio.sh: no fio at '$fio' (apt-get install fio, or set NVMUX_FIO)" >&2; exit 2; }

set +e  # vm-lib.sh's helpers report through return codes
# shellcheck source=../../test/vm/vm-lib.sh
. "$root/test/vm/vm-lib.sh"
vm_find_qemu "$root"
cache=$build/guest-cache
"$root/test/vm/build-guest.sh" "$cache" || { echo "pcie-guest-fio.sh: building the guest failed" >&2; exit 1; }

tmp=$(mktemp -d /tmp/nvmux-bench-pcie-guest.XXXXXX)
serial=$tmp/serial.log
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

vm_initramfs "$cache" "$root/scripts/bench/pcie-guest-fio-init.sh" "$tmp/initramfs.cpio.gz" "$perf" \
  "$root/scripts/setup.sh" "$fio"
# 128 MiB of random data, so every read returns written blocks.
head -c 128M /dev/urandom >"$tmp/ns.img"
qemu_cmd=("$qemu" "${qemu_share[@]}" -accel tcg,thread=single -machine q35 -smp 2 -m 2G -cpu max
  -device intel-iommu,intremap=on,aw-bits=48
  -drive "file=$tmp/ns.img,if=none,id=n1,format=raw" -device nvme,id=ca,serial=NVMUXBENCH,addr=0x4
  -device nvme-ns,bus=ca,drive=n1,nsid=1
  -kernel "$cache/vmlinux" -initrd "$tmp/initramfs.cpio.gz"
  -append "console=ttyS0 quiet panic=-1 intel_iommu=on iommu=pt no_timer_check nvmux.runs=$runs nvmux.seconds=$seconds"
  -display none -nodefaults -no-reboot -serial "file:$serial")
echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "RUN: ${qemu_cmd[*]}"
start=$SECONDS
"${qemu_cmd[@]}" >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
# Each run: 8 loads of SECONDS plus rebinding; generous for a loaded host.
if ! vm_wait_serial '^GUEST-RESULT done=' "$qemu_pid" $((120 + runs * (8 * seconds + 90))); then
  echo "pcie-guest-fio.sh: the guest did not finish"; vm_logs; exit 1
fi
wait "$qemu_pid"; qemu_pid=
echo "guest ran $((SECONDS - start)) s"
if grep -q '^GUEST-RESULT bench_failed=' "$serial"; then
  echo "pcie-guest-fio.sh: a load failed in the guest"; vm_logs; exit 1
fi
grep '^GUEST-RUN' "$serial" | tr -d '\r' | awk '!seen[$0]++'
echo "the namespace's queue polls (io_poll): $(result io_poll)"

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
figures() {  # who qd [run]: the IOPS of every run (or of one), one a line
  sed -n "s/^GUEST-RESULT bench run=${3:-[0-9]*} who=$1 qd=$2 iops=\\([0-9.]*\\).*/\\1/p" "$serial"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
for r in $(seq "$runs"); do
  for qd in 1 32; do
    line="run $r QD$qd:"
    for who in fio fiopoll vfio uio; do
      x=$(figures $who $qd $r)
      line+=" $who $x"
      [ $who = fio ] && f=$x || { line+=" ($(ratio "$x" "$f")x)"; ratio "$x" "$f" >>"$tmp/ratio-$who-$qd"; echo >>"$tmp/ratio-$who-$qd"; }
    done
    echo "$line"
  done
done
echo
printf '%-5s %10s %10s %10s %10s %13s %13s %13s\n' load fio fio-poll "nvmux vfio" "nvmux uio" fio-poll/fio vfio/fio uio/fio
for qd in 1 32; do
  f=$(figures fio $qd | median) line=$(printf '%-5s %10s' "QD$qd" "$f") ratios=
  for who in fiopoll vfio uio; do
    x=$(figures $who $qd | median)
    line+=$(printf ' %10s' "$x")
    ratios+=$(printf ' %13s' "$(ratio "$x" "$f") ($(grep . "$tmp/ratio-$who-$qd" | median))")
  done
  echo "$line$ratios"
done
echo "(IOPS: medians of $runs runs x $seconds s; ratios to fio (interrupts): of the medians, and in parentheses the"
echo " median of each run's ratio; 4 KiB randread on one QEMU nvme controller, TCG single-threaded, 2 vCPUs;"
echo " fio: io_uring, O_DIRECT, /dev/nvme0n1 on the kernel's nvme driver (poll_queues=1); nvmux-perf: one core,"
echo " the same namespace. Under TCG only ratios within one boot mean anything)"
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg)"
