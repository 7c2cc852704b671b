#!/usr/bin/env bash
# Completion modes (issue 17): nvmux-perf --mode poll, hybrid and event,
# 4 KiB randread at QD 1 and 32 against nvmux-emu --backing null (emulator on
# CPU 1, perf on CPU 0) and, when the peer is there (NVMUX_SPDK_DIR, default
# ../shared/peers/spdk), against SPDK's vfio-user target (its reactor on
# CPU 1, a RAM disk), with --cpu-stats: IOPS, average latency and the
# worker's CPU per I/O; beside the kernel's path in the same run (fio,
# io_uring, a tmpfs file, CPU per I/O from fio's usr+sys). Medians of RUNS.
# Then hybrid's QD 1 average latency over poll's (each process with its own
# core; goal <= 1.10), and events-shared.sh: 4 and 8 secondaries sharing
# the two CPUs (poll against hybrid), one secondary on the device's own CPU
# (each mode) and the idle group in event mode, then
# the sharing again with SPDK's target as the device (when the peer is there).
#
#   scripts/bench/events.sh [--short] [--idle-seconds N] [BUILD_DIR] [RUNS]
#     (default 3 runs x 5 s, idle 60 s; --short: 1 x 1 s, idle 5 s)
#
# Needs free hugepages (scripts/hugepages.sh reserve); reserves and releases
# none itself. Leaves no process behind. Run it on an otherwise idle
# machine: the load average is printed with the results.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
seconds=5
build=$root/build
shared_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=1; shared_args+=(--short); shift ;;
    --idle-seconds) shared_args+=(--idle-seconds "${2:-}"); shift 2 || shift ;;
    -*) echo "events.sh: unknown option '$1' (allowed: --short, --idle-seconds N, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) if [[ "$1" =~ ^[0-9]+$ ]]; then runs=$1; else build=$1; fi; shift ;;
  esac
done
emu=$build/tools/emu/nvmux-emu
perf=$build/tools/perf/nvmux-perf
for b in "$emu" "$perf"; do
  [ -x "$b" ] || { echo "events.sh: $b is missing: build first (cmake --build $build)" >&2; exit 2; }
done
free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
[ "${free:-0}" -ge 64 ] || { echo "events.sh: only ${free:-0} free hugepages: run scripts/hugepages.sh reserve first" >&2; exit 2; }

work=$(mktemp -d /tmp/nvmux-bench-events.XXXXXX)
emu_pid="" spdk_started=""
spdk=${NVMUX_SPDK_DIR:-$(cd "$root/.." && pwd)/shared/peers/spdk}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$emu_pid" ]; then kill -TERM "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; fi
  [ -z "$spdk_started" ] || "$spdk/target.sh" stop > /dev/null 2>&1 || true
  # DPDK's runtime directories of SPDK's programs that are gone.
  for d in /var/run/dpdk/spdk_pid*; do
    if [ -d "$d" ] && ! kill -0 "${d##*spdk_pid}" 2>/dev/null; then rm -rf "$d" || true; fi
  done
  rm -rf "$work" /dev/shm/nvmux-bench-events-fio
  exit $rc
}
trap cleanup EXIT INT TERM

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rows=()
declare -A latency=()
record() {  # $1 = label, $2 = IOPS list, $3 = latency list, $4 = CPU us/IO list, $5 = core % list
  latency[$1]=$(echo $3 | tr ' ' '\n' | median)
  rows+=("$(printf '%-44s %10.0f %9.1f %9.2f %7.1f' "$1" "$(echo $2 | tr ' ' '\n' | median)" \
    "$(echo $3 | tr ' ' '\n' | median)" "$(echo $4 | tr ' ' '\n' | median)" "$(echo $5 | tr ' ' '\n' | median)")")
}

# The three modes at QD 1 and 32 against one device (trid $2), rows
# labelled with $1.
measure_modes() {  # $1 = device label, $2 = trid
  for qd in 1 32; do
    for mode in poll hybrid event; do
      iops="" lat="" cpu="" core=""
      for _ in $(seq "$runs"); do
        "$perf" -r "$2" -q "$qd" -o 4096 -w randread -t "$seconds" -a 1 -c 0x1 --no-live --mode "$mode" \
          --cpu-stats > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
        read -r i l < <(awk '/^Total/ { print $3, $5 }' "$work/perf.out")
        read -r c p < <(sed -n 's/.*measured (\([0-9.]*\)% of one core), \([0-9.]*\) us per I\/O/\2 \1/p' "$work/perf.out")
        iops+="$i " lat+="$l " cpu+="$c " core+="$p "
      done
      record "nvmux $mode randread QD$qd$1" "$iops" "$lat" "$cpu" "$core"
    done
  done
}

mkdir -p "$work/emu"
taskset -c 1 "$emu" --socket "$work/emu" --backing null --ns size=1G > "$work/emu.log" 2>&1 &
emu_pid=$!
for _ in $(seq 100); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
measure_modes "" "trtype:vfiouser traddr:$work/emu subnqn:nqn.2024-01.io.nvmux:emu:NVMUXEMU0001"
# The emulator stops first: the next parts start their own devices.
kill -TERM "$emu_pid" 2>/dev/null || true
wait "$emu_pid" 2>/dev/null || true
emu_pid=""

# SPDK's vfio-user target (its reactor spinning on CPU 1, a RAM disk), when
# the peer is there: it raises its MSI-X vectors as eventfds too.
if [ -x "$spdk/target.sh" ]; then
  free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
  if [ "${free:-0}" -ge 640 ]; then
    export SPDK_PEER_RUN=$work/spdk-target
    SPDK_TARGET_CPUMASK=0x2 "$spdk/target.sh" start vfiouser "$work/spdk-vfu" > /dev/null
    spdk_started=1
    measure_modes " (SPDK target)" "trtype:vfiouser traddr:$work/spdk-vfu"
    "$spdk/target.sh" stop > /dev/null
    spdk_started=""
  else
    echo "events.sh: only ${free:-0} free hugepages, SPDK's target needs 640: its rows are left out" >&2
  fi
else
  echo "events.sh: no SPDK peer at $spdk (NVMUX_SPDK_DIR): its rows are left out" >&2
fi

if command -v fio > /dev/null; then
  for qd in 1 32; do
    iops="" lat="" cpu="" core=""
    for _ in $(seq "$runs"); do
      out=$(fio --name=nvmux --filename=/dev/shm/nvmux-bench-events-fio --size=1G --rw=randread --bs=4k \
        --iodepth="$qd" --ioengine=io_uring --time_based --runtime="$seconds" --cpus_allowed=0 --minimal 2> /dev/null)
      # Terse v3: 8 read IOPS, 40 read mean latency (us), 88/89 usr/sys CPU %.
      i=$(echo "$out" | cut -d';' -f8) l=$(echo "$out" | cut -d';' -f40)
      u=$(echo "$out" | cut -d';' -f88 | tr -d '%') s=$(echo "$out" | cut -d';' -f89 | tr -d '%')
      iops+="$i " lat+="$l " core+="$(echo "$u + $s" | bc -l) "
      cpu+="$(echo "($u + $s) / 100 / $i * 1000000" | bc -l) "
    done
    record "fio io_uring randread QD$qd (tmpfs)" "$iops" "$lat" "$cpu" "$core"
  done
else
  echo "events.sh: fio is not installed; no kernel reference" >&2
fi

printf '%-44s %10s %9s %9s %7s\n' "load (4 KiB)" "IOPS" "avg us" "CPU us/IO" "core %"
printf '%s\n' "${rows[@]}"
echo "medians of $runs run(s) x ${seconds} s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "QD1, each process on its own core: hybrid / poll average latency = $(awk \
  -v h="${latency[nvmux hybrid randread QD1]}" -v p="${latency[nvmux poll randread QD1]}" \
  'BEGIN { if (p > 0) printf "%.3f", h / p; else print "nan" }') (goal <= 1.10)"

echo
"$root/scripts/bench/events-shared.sh" "${shared_args[@]}" "$build" "$runs"
if [ -x "$spdk/target.sh" ]; then
  echo
  "$root/scripts/bench/events-shared.sh" "${shared_args[@]}" --device spdk --only shared "$build" "$runs"
fi
