#!/usr/bin/env bash
# nvmux's NVMe/TCP host beside SPDK's own (issue 13): both drive the same
# SPDK nvmf_tgt (512 MiB RAM disk, NVMe/TCP on 127.0.0.1, target on CPU 1),
# each host on CPU 0: 4 KiB randread at QD 1 and 32, 4 KiB randwrite at QD
# 32, 128 KiB sequential write at QD 8. A third host is nvmux-perf as a
# secondary of a group whose nvmuxd owns the controller (-i: admin through
# nvmuxd, its own I/O connection). The hosts take turns within each run, so
# drift hits all alike. Prints the median IOPS and average latency of each
# host and load, and nvmux / SPDK; then nvmux / SPDK per machine state
# (each measurement bracketed by nvmux-bench-c2c, as in spdk-peer.sh:
# "near" when the CPUs hand a cache line over in under 100 ns before and
# after it, "far" when over; the ratio over the runs whose two measurements
# were in the same state).
#
#   scripts/bench/tcp.sh [--short] [--seconds S] [BUILD_DIR] [RUNS]
#   (default 3 runs x 5 s; --short: 1 x 1 s). The hosts take turns in each
#   run (SPDK first in odd runs, last in even ones); besides the medians of
#   the IOPS it prints the median of each run's ratio to the SPDK run beside
#   it, which the machine's drift from run to run moves less.
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
    --seconds) seconds=${2:-}; shift 2 || true ;;
    -*) echo "tcp.sh: unknown option '$1' (allowed: --short, --seconds S, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && build=${positional[0]}
[ ${#positional[@]} -ge 2 ] && runs=${positional[1]}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "tcp.sh: RUNS '$runs' must be a positive number" >&2; exit 2; }
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "tcp.sh: --seconds '$seconds' must be a positive number" >&2; exit 2; }
spdk=${NVMUX_SPDK_DIR:-$(cd "$root/.." && pwd)/shared/peers/spdk}
[ -x "$spdk/bin/spdk_nvme_perf" ] || {
  echo "tcp.sh: no SPDK build at $spdk (set NVMUX_SPDK_DIR to one with bin/spdk_nvme_perf)" >&2; exit 2; }
perf=$build/tools/perf/nvmux-perf
nvmuxd=$build/primary/nvmuxd
manage=$build/tools/manage/nvmux-manage
c2c=$build/tools/bench/nvmux-bench-c2c
[ -x "$perf" ] && [ -x "$nvmuxd" ] && [ -x "$c2c" ] || { echo "tcp.sh: $perf, $nvmuxd or $c2c is missing: build first (cmake --build $build)" >&2; exit 2; }
group=$((800000 + $$ % 90000))
daemon_pid=
# shellcheck disable=SC1091
source "$spdk/env.sh"
# shellcheck disable=SC1091
source "$root/scripts/bench/machine-state.sh"

work=$(mktemp -d /tmp/nvmux-bench-tcp.XXXXXX)
export SPDK_PEER_RUN=$work/target
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    "$manage" cleanup -i "$group" --yes >/dev/null 2>&1 || true
  fi
  "$spdk/target.sh" stop >/dev/null 2>&1 || true
  spdk_peer_clean
  # DPDK's runtime directories of SPDK's programs that are gone.
  for d in /var/run/dpdk/spdk_pid*; do
    if [ -d "$d" ] && ! kill -0 "${d##*spdk_pid}" 2>/dev/null; then rm -rf "$d" || true; fi
  done
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

"$nvmuxd" -i "$group" -r "$trid" -m 0x2 > "$work/nvmuxd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do grep -q "nvmuxd: group $group ready" "$work/nvmuxd.log" && break; sleep 0.05; done
grep -q "nvmuxd: group $group ready" "$work/nvmuxd.log" || { echo "tcp.sh: nvmuxd did not come up:"; cat "$work/nvmuxd.log"; exit 1; }

# name: perf arguments (both perf tools take the same ones)
loads=("4k-randread-QD1:-q 1 -o 4096 -w randread" "4k-randread-QD32:-q 32 -o 4096 -w randread"
  "4k-randwrite-QD32:-q 32 -o 4096 -w randwrite" "128k-write-QD8:-q 8 -o 131072 -w write")
declare -A iops lat ratios pair_ratios state
# One host's run of LOAD: its IOPS and average latency into iops/lat, the
# machine state around it into state[HOST] (a probe after each run; the one
# before is the previous run's).
measure() {  # HOST NAME ARGS...
  local host=$1 name=$2 out
  shift 2
  case $host in
    spdk) out=$(spdk_nvme_perf -r "$trid" "$@" -t "$seconds" -c 0x1 2>&1) || {
        echo "tcp.sh: spdk_nvme_perf failed:"; echo "$out"; exit 1; }
      spdk_peer_clean ;;
    nvmux) out=$("$perf" -r "$trid" "$@" -t "$seconds" -c 0x1 2>&1) || {
        echo "tcp.sh: nvmux-perf failed:"; echo "$out"; exit 1; } ;;
    group) out=$("$perf" -i "$group" "$@" -t "$seconds" -c 0x1 2>&1) || {
        echo "tcp.sh: nvmux-perf -i $group failed:"; echo "$out"; exit 1; } ;;
  esac
  local after v l
  after=$(c2c_ns)
  read -r v l < <(echo "$out" | total)
  iops[$host,$name]+="$v "; lat[$host,$name]+="$l "
  last[$host]=$v
  state[$host]="$(machine_state "$probe" "$after") ($probe/$after ns)"
  probe=$after
}
declare -A last
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
probe=$(c2c_ns)
for run in $(seq "$runs"); do
  # Odd runs SPDK first, even runs SPDK last: a drift of the machine within
  # a run favours neither host.
  hosts=(spdk nvmux group)
  [ $((run % 2)) -eq 0 ] && hosts=(group nvmux spdk)
  for load in "${loads[@]}"; do
    name=${load%%:*}
    read -ra args <<<"${load#*:}"
    for h in "${hosts[@]}"; do measure "$h" "$name" "${args[@]}"; done
    pair_ratios[nvmux,$name]+="$(ratio "${last[nvmux]}" "${last[spdk]}") "
    pair_ratios[group,$name]+="$(ratio "${last[group]}" "${last[spdk]}") "
    s1=${state[spdk]%% *}; s2=${state[nvmux]%% *}
    [ "$s1" = "$s2" ] && [ "$s1" != mixed ] && ratios[$s1,$name]+="$(ratio "${last[nvmux]}" "${last[spdk]}") "
    echo "run $run $name: SPDK ${last[spdk]} IOPS [${state[spdk]}], nvmux ${last[nvmux]} IOPS [${state[nvmux]}]," \
      "nvmux secondary ${last[group]} IOPS [${state[group]}]"
  done
done

m() { tr ' ' '\n' <<<"$1" | grep . | median; }
echo
printf '%-18s %10s %10s %10s %9s %9s %9s %8s %8s %8s %8s\n' load "SPDK IOPS" "nvmux" "secondary" "SPDK us" "nvmux us" \
  "sec. us" "nvmux/S" "sec./S" "pairs n/S" "pairs s/S"
for load in "${loads[@]}"; do
  name=${load%%:*}
  si=$(m "${iops[spdk,$name]}"); ni=$(m "${iops[nvmux,$name]}"); gi=$(m "${iops[group,$name]}")
  sl=$(m "${lat[spdk,$name]}"); nl=$(m "${lat[nvmux,$name]}"); gl=$(m "${lat[group,$name]}")
  printf '%-18s %10s %10s %10s %9s %9s %9s %8s %8s %8.2f %8.2f\n' "$name" "$si" "$ni" "$gi" "$sl" "$nl" "$gl" \
    "$(awk -v a="$ni" -v b="$si" 'BEGIN {printf "%.2f", a / b}')" "$(awk -v a="$gi" -v b="$si" 'BEGIN {printf "%.2f", a / b}')" \
    "$(m "${pair_ratios[nvmux,$name]}")" "$(m "${pair_ratios[group,$name]}")"
done
echo "(medians of $runs runs x ${seconds} s; hosts on CPU 0, target on CPU 1, nvmuxd on CPU 1; \"pairs\": the"
echo " median of each run's ratio to the SPDK run beside it)"
echo "nvmux / SPDK by machine state (median over the runs whose two measurements were both near or both far):"
for load in "${loads[@]}"; do
  name=${load%%:*}
  line=$(printf '  %-18s' "$name")
  for st in near far; do
    r=${ratios[$st,$name]:-}
    if [ -z "$r" ]; then line+=" $st --"; else line+=" $st $(m "$r" | awk '{ printf "%.2f", $1 }') ($(wc -w <<<"$r") run(s))"; fi
  done
  echo "$line"
done
