#!/usr/bin/env bash
# nvmux's NVMe/TCP host beside SPDK's own (issue 13): both drive the same
# SPDK nvmf_tgt (512 MiB RAM disk, NVMe/TCP on 127.0.0.1, target on CPU 1),
# each host on CPU 0, 4 KiB random reads at QD 1 and QD 32. The hosts take
# turns within each run, so drift hits both alike. Prints the median IOPS
# and average latency of each host and load, and nvmux / SPDK.
#
#   scripts/bench/tcp.sh [--short] [BUILD_DIR] [RUNS]   (default 3 runs x 5 s; --short: 1 x 1 s)
#
# Needs NVMUX_SPDK_DIR (default: ../shared/peers/spdk beside the checkout)
# and hugepages already reserved (scripts/hugepages.sh); leaves no process
# behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
seconds=5
build=$root/build
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=1; shift ;;
    -*) echo "tcp.sh: unknown option '$1' (allowed: --short, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && build=${positional[0]}
[ ${#positional[@]} -ge 2 ] && runs=${positional[1]}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "tcp.sh: RUNS '$runs' must be a positive number" >&2; exit 2; }
spdk=${NVMUX_SPDK_DIR:-$(cd "$root/.." && pwd)/shared/peers/spdk}
[ -x "$spdk/bin/spdk_nvme_perf" ] || {
  echo "tcp.sh: no SPDK build at $spdk (set NVMUX_SPDK_DIR to one with bin/spdk_nvme_perf)" >&2; exit 2; }
perf=$build/tools/perf/nvmux-perf
[ -x "$perf" ] || { echo "tcp.sh: $perf is missing: build first (cmake --build $build)" >&2; exit 2; }
# shellcheck disable=SC1091
source "$spdk/env.sh"

work=$(mktemp -d /tmp/nvmux-bench-tcp.XXXXXX)
export SPDK_PEER_RUN=$work/target
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$spdk/target.sh" stop >/dev/null 2>&1 || true
  spdk_peer_clean
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trid=$("$spdk/target.sh" start tcp "$port" | tail -1)
echo "target: $trid"

# "IOPS avg_us" from a perf's Total line (both print SPDK's table).
total() { awk '/^Total/ {print $3, $5; found=1} END {if (!found) exit 1}'; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -A iops lat
for run in $(seq "$runs"); do
  for qd in 1 32; do
    out=$(spdk_nvme_perf -r "$trid" -q "$qd" -o 4096 -w randread -t "$seconds" -c 0x1 2>&1) || {
      echo "tcp.sh: spdk_nvme_perf failed:"; echo "$out"; exit 1; }
    spdk_peer_clean
    read -r si l < <(echo "$out" | total)
    iops[spdk,$qd]+="$si "; lat[spdk,$qd]+="$l "
    out=$("$perf" -r "$trid" -q "$qd" -o 4096 -w randread -t "$seconds" -c 0x1 2>&1) || {
      echo "tcp.sh: nvmux-perf failed:"; echo "$out"; exit 1; }
    read -r i l < <(echo "$out" | total)
    iops[nvmux,$qd]+="$i "; lat[nvmux,$qd]+="$l "
    echo "run $run QD $qd: SPDK $si IOPS, nvmux $i IOPS"
  done
done

echo
printf '%-6s %-4s %12s %12s %12s %12s %10s\n' load "" "SPDK IOPS" "nvmux IOPS" "SPDK avg us" "nvmux avg us" "IOPS ratio"
for qd in 1 32; do
  si=$(tr ' ' '\n' <<<"${iops[spdk,$qd]}" | grep . | median)
  ni=$(tr ' ' '\n' <<<"${iops[nvmux,$qd]}" | grep . | median)
  sl=$(tr ' ' '\n' <<<"${lat[spdk,$qd]}" | grep . | median)
  nl=$(tr ' ' '\n' <<<"${lat[nvmux,$qd]}" | grep . | median)
  printf '%-6s %-4s %12s %12s %12s %12s %10s\n' "QD$qd" "" "$si" "$ni" "$sl" "$nl" \
    "$(awk -v a="$ni" -v b="$si" 'BEGIN {printf "%.2f", a / b}')"
done
echo "(medians of $runs runs x ${seconds} s; 4 KiB randread; hosts on CPU 0, target on CPU 1)"
