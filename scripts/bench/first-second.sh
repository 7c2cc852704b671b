#!/usr/bin/env bash
# A new user's first second against steady state (issue 15): nvmux-emu
# started fresh on CPU 1 with each RAM backing, then nvmux-perf on CPU 0,
# QD 1 4 KiB randread over the whole namespace with no warm-up: 1 s (the
# first second), 5 s, and 1 s again (steady state). Also the emulator's
# start-up time (spawn to its socket), what its log says it populated, and
# the page faults it took during the first second (minflt+majflt of
# /proc/PID/stat: a figure the machine's load does not move).
# Prints, per backing, the medians over the runs of start-up time, first-
# second IOPS, steady IOPS and their ratio.
#
#   scripts/bench/first-second.sh [--runs N] [BUILD_DIR]      (default 3 runs)
#
# Uses the hugepages already reserved (scripts/hugepages.sh reserve) and
# leaves them; leaves no process behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
build=$root/build
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    -*) echo "first-second.sh: unknown option '$1' (allowed: --runs N, BUILD_DIR)" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
emu=$build/tools/emu/nvmux-emu
perf=$build/tools/perf/nvmux-perf
for b in "$emu" "$perf"; do
  [ -x "$b" ] || { echo "first-second.sh: $b is missing: build first" >&2; exit 2; }
done
work=$(mktemp -d /tmp/nvmux-first-second.XXXXXX)
emu_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$emu_pid" ] || { kill -TERM "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now_ns() { date +%s%N; }

perf_iops() {  # $1 = seconds; prints the Total row's IOPS
  taskset -c 0 "$perf" -r "trtype:vfiouser traddr:$work/emu" -q 1 -o 4096 -w randread -t "$1" -a 0 -c 0x1 --no-live \
    > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  awk '/^Total/ { print $3 }' "$work/perf.out"
}

echo "== first second vs steady state: $runs run(s) per backing; load average $(cut -d' ' -f1-3 /proc/loadavg)"
faults() { awk '{ print $10 + $12 }' "/proc/$1/stat"; }
printf '%-10s %10s %14s %14s %8s %13s  %s\n' backing start_s first_iops steady_iops ratio first_faults \
  "emulator's log (last run)"
for backing in ram ram-lazy; do
  starts="" firsts="" steadies="" ratios="" faultss=""
  for _ in $(seq "$runs"); do
    rm -rf "$work/emu"
    t0=$(now_ns)
    NVMUX_LOG_LEVEL=notice taskset -c 1 "$emu" --socket "$work/emu" --backing "$backing" > "$work/emu.log" 2>&1 &
    emu_pid=$!
    for _ in $(seq 2000); do [ -S "$work/emu/cntrl" ] && break; sleep 0.005; done
    [ -S "$work/emu/cntrl" ] || { echo "first-second.sh: nvmux-emu did not start:" >&2; cat "$work/emu.log" >&2; exit 1; }
    t1=$(now_ns)
    f0=$(faults "$emu_pid")
    first=$(perf_iops 1)
    faultss+="$(( $(faults "$emu_pid") - f0 )) "
    perf_iops 5 > /dev/null
    steady=$(perf_iops 1)
    kill -TERM "$emu_pid"; wait "$emu_pid" 2>/dev/null || true; emu_pid=""
    starts+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') "
    firsts+="$first " steadies+="$steady "
    ratios+="$(awk -v f="$first" -v s="$steady" 'BEGIN { printf "%.3f", f / s }') "
  done
  printf '%-10s %10s %14s %14s %8s %13s  %s\n' "$backing" "$(printf '%s\n' $starts | median)" \
    "$(printf '%s\n' $firsts | median)" "$(printf '%s\n' $steadies | median)" "$(printf '%s\n' $ratios | median)" \
    "$(printf '%s\n' $faultss | median)" "$(grep -o 'namespace 1: .*' "$work/emu.log" | head -1)"
  echo "   runs: start [$starts] first [$firsts] steady [$steadies] ratio [$ratios] faults [$faultss]"
done
