#!/usr/bin/env bash
# The driver's benchmark on the embedded default (issue 6): nvmux-emu on CPU 1
# (null and RAM backing), nvmux-perf on CPU 0; 4 KiB randread at QD 1, 32 and
# 128 and randwrite at QD 128, and the driver's submit/complete cost
# (nvmux-bench-overhead, null backing); then the same QD 1 read as a secondary of
# nvmuxd (its latency against a process owning the device, run by run
# alternately) and 1, 2 and 4 secondaries
# at QD 32 at once (aggregate and per-process IOPS); then the same loads through
# the Linux kernel for comparison (fio, io_uring, a file in /dev/shm).
# Prints medians of IOPS and average latency per load, and writes them as JSON.
#
#   scripts/bench/perf.sh [--short] [BUILD_DIR]     (default: 3 runs x 10 s; --short: 1 run x 1 s, for CI)
#
# Reserves hugepages and gives them back; leaves no process behind. Run it on
# an otherwise idle machine: the load average is printed with the results.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
seconds=10
build=$root/build
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=1; shift ;;
    -*) echo "perf.sh: unknown option '$1' (allowed: --short, BUILD_DIR)" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
emu=$build/tools/emu/nvmux-emu
perf=$build/tools/perf/nvmux-perf
nvmuxd=$build/primary/nvmuxd
for b in "$emu" "$perf" "$nvmuxd" "$build/tools/bench/nvmux-bench-overhead"; do
  [ -x "$b" ] || { echo "perf.sh: $b is missing: build first (cmake --build $build)" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || echo "perf.sh: warning: one CPU only; emulator and perf share it" >&2

work=$(mktemp -d /tmp/nvmux-bench.XXXXXX)
group=$((900000 + $$ % 90000))
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  "$build/tools/manage/nvmux-manage" cleanup -i "$group" --yes >/dev/null 2>&1 || true
  rm -rf "$work" /dev/shm/nvmux-bench-fio
  "$root/scripts/hugepages.sh" release >/dev/null || true
  exit $rc
}
trap cleanup EXIT INT TERM
"$root/scripts/hugepages.sh" reserve 512 >/dev/null

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start_emu() {  # $1 = backing
  rm -rf "$work/emu" && mkdir -p "$work/emu"
  taskset -c 1 "$emu" --socket "$work/emu" --backing "$1" > "$work/emu.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/emu/cntrl" ] && return 0; sleep 0.05; done
  echo "perf.sh: nvmux-emu did not start:" >&2; cat "$work/emu.log" >&2; exit 1
}
stop_last() { kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# One nvmux-perf run after a 1 s warm-up (the first second after a start
# measures the machine settling, not the driver); prints "IOPS AVG_US" from
# its Total row.
perf_run() {  # $1 = workload, $2 = depth, rest = extra options
  local w=$1 q=$2
  shift 2
  "$perf" -r "trtype:vfiouser traddr:$work/emu" -q "$q" -o 4096 -w "$w" -t "$seconds" -a 1 -c 0x1 --no-live "$@" \
    > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  awk '/^Total/ { print $3, $5 }' "$work/perf.out"
}

results=()
json="["
record() {  # name iops_list lat_list
  local name=$1 iops lat
  iops=$(printf '%s\n' $2 | median)
  lat=$(printf '%s\n' $3 | median)
  results+=("$(printf '%-44s %12.0f %10.2f' "$name" "$iops" "$lat")")
  json+=$(printf '%s{"load": "%s", "iops_median": %.0f, "avg_latency_us_median": %.2f, "runs": %d}' \
    "$([ "$json" = "[" ] || echo ", ")" "$name" "$iops" "$lat" "$runs")
}

loads=("randread 1" "randread 32" "randread 128" "randwrite 128")
echo "== nvmux benchmark: $runs run(s) x $seconds s per load; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for backing in null ram; do
  start_emu "$backing"
  for load in "${loads[@]}"; do
    set -- $load
    iops="" lat=""
    for _ in $(seq "$runs"); do
      read -r i l < <(perf_run "$1" "$2")
      [ -n "${l:-}" ] || { echo "perf.sh: nvmux-perf $1 QD$2 gave no result" >&2; exit 1; }
      iops+="$i " lat+="$l "
    done
    record "nvmux-perf $1 QD$2 ($backing)" "$iops" "$lat"
  done
  if [ "$backing" = null ]; then
    # The driver's own cost per I/O (SPDK's overhead tool): QD1 4 KiB reads,
    # the Read call and the completion's ProcessCompletions call, TSC-timed.
    sub="" com=""
    for _ in $(seq "$runs"); do
      "$build/tools/bench/nvmux-bench-overhead" -r "trtype:vfiouser traddr:$work/emu" -t "$seconds" -c 0 \
        > "$work/overhead.out" 2>&1 || { cat "$work/overhead.out" >&2; exit 1; }
      sub+="$(awk '$1 == "submit" { print $3 }' "$work/overhead.out") "
      com+="$(awk '$1 == "complete" { print $3 }' "$work/overhead.out") "
    done
    overhead_submit=$(printf '%s\n' $sub | median)
    overhead_complete=$(printf '%s\n' $com | median)
  fi
  stop_last
done

# The QD 1 read of a process that owns the device (standalone) against the
# same read as a secondary of nvmuxd, alternating run by run so both see
# the same machine state; two emulators (null backing) on CPU 1, the idle
# one asleep. Each run warms up for 1 s first.
mkdir -p "$work/own"
taskset -c 1 "$emu" --socket "$work/own" --backing null > "$work/emu-own.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/own/cntrl" ] && break; sleep 0.05; done
start_emu null
taskset -c 1 "$nvmuxd" -i "$group" -r "trtype:vfiouser traddr:$work/emu" > "$work/nvmuxd.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "ready" "$work/nvmuxd.log" && break; sleep 0.05; done
grep -q "ready" "$work/nvmuxd.log" || { echo "perf.sh: nvmuxd did not start:" >&2; cat "$work/nvmuxd.log" >&2; exit 1; }
# The machine itself drifts between states (the same run can take 0.5 or
# 1 us at QD 1 on this VM, depending on where the host runs its vCPUs), so
# the two alternate, twice as many runs as elsewhere, half as long each;
# the comparison is the ratio of the medians, and the per-pair ratios are
# printed to show how far the machine moved meanwhile.
pair_seconds=$(( seconds > 1 ? seconds / 2 : 1 ))
own_iops="" own_lat="" iops="" lat="" ratios=""
for _ in $(seq $(( runs * 2 ))); do
  "$perf" -r "trtype:vfiouser traddr:$work/own" -q 1 -o 4096 -w randread -t "$pair_seconds" -a 1 -c 0x1 --no-live \
    > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  read -r oi ol < <(awk '/^Total/ { print $3, $5 }' "$work/perf.out")
  "$perf" -i "$group" -r "trtype:vfiouser traddr:$work/emu" -q 1 -o 4096 -w randread -t "$pair_seconds" -a 1 -c 0x1 \
    --no-live > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  read -r si sl < <(awk '/^Total/ { print $3, $5 }' "$work/perf.out")
  own_iops+="$oi " own_lat+="$ol " iops+="$si " lat+="$sl "
  ratios+="$(awk -v s="$sl" -v o="$ol" 'BEGIN { printf "%.4f", s / o }') "
done
record "nvmux-perf randread QD1 (null, owns device)" "$own_iops" "$own_lat"
record "nvmux-perf randread QD1 (null, secondary)" "$iops" "$lat"
standalone_lat=$(printf '%s\n' $own_lat | median)
secondary_lat=$(printf '%s\n' $lat | median)

# Several secondaries at once (QD 32 each, disjoint LBA ranges), all on
# CPU 0; nvmuxd shares CPU 1 with the emulator. Aggregate and per-process IOPS.
multi=()
for n in 1 2 4; do
  totals=""
  per=""
  for _ in $(seq "$runs"); do
    mpids=()
    for k in $(seq "$n"); do
      "$perf" -i "$group" -r "trtype:vfiouser traddr:$work/emu" -q 32 -o 4096 -w randread -t "$seconds" -c 0x1 --no-live \
        --lba-range "$(( (k - 1) * 262144 )):262144" > "$work/multi.$k" 2>&1 &
      mpids+=($!)
    done
    for p in "${mpids[@]}"; do wait "$p" || { cat "$work"/multi.* >&2; exit 1; }; done
    sum=$(cat "$work"/multi.* | awk '/^Total/ { s += $3 } END { printf "%.0f", s }')
    totals+="$sum "
    per+="$(awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.0f", s / n }') "
  done
  agg=$(printf '%s\n' $totals | median)
  each=$(printf '%s\n' $per | median)
  multi+=("$(printf '%-44s %12.0f %12.0f' "$n secondaries x QD32 randread (null)" "$agg" "$each")")
  json+=$(printf ', {"load": "%d secondaries QD32 randread (null)", "aggregate_iops_median": %.0f, "per_process_iops_median": %.0f, "runs": %d}' "$n" "$agg" "$each" "$runs")
done
stop_last  # nvmuxd
stop_last  # its emulator
stop_last  # the device-owner's emulator

# The kernel's path for comparison: fio with io_uring on a tmpfs file.
if command -v fio > /dev/null; then
  fio_file=/dev/shm/nvmux-bench-fio
  for load in "${loads[@]}"; do
    set -- $load
    iops="" lat=""
    for _ in $(seq "$runs"); do
      out=$(fio --name=nvmux --filename=$fio_file --size=1G --rw="$1" --bs=4k --iodepth="$2" --ioengine=io_uring \
        --time_based --runtime="$seconds" --cpus_allowed=0 --minimal 2> /dev/null)
      if [ "$1" = randread ]; then
        iops+="$(echo "$out" | cut -d';' -f8) " lat+="$(echo "$out" | cut -d';' -f40) "
      else
        iops+="$(echo "$out" | cut -d';' -f49) " lat+="$(echo "$out" | cut -d';' -f81) "
      fi
    done
    record "fio io_uring $1 QD$2 (/dev/shm)" "$iops" "$lat"
  done
else
  echo "perf.sh: fio is not installed (scripts/deps.sh installs it); no kernel comparison" >&2
fi

printf '%-44s %12s %10s\n' "load (4 KiB)" "IOPS" "avg us"
printf '%s\n' "${results[@]}"
printf '%-44s %12s %10s\n' "driver overhead (QD1 4 KiB read, null)" "submit ns" "complete ns"
printf '%-44s %12.1f %10.1f\n' "nvmux-bench-overhead, average (median of runs)" "$overhead_submit" "$overhead_complete"
printf '%-44s %12s %12s\n' "processes sharing the controller" "aggregate" "per process"
printf '%s\n' "${multi[@]}"
ratio=$(awk -v s="$secondary_lat" -v p="$standalone_lat" 'BEGIN { printf "%.3f", s / p }')
echo "secondary / device-owner QD1 average latency: $ratio (medians of $(( runs * 2 )) runs each: $secondary_lat us / $standalone_lat us; back-to-back pairs: $ratios)"
mkdir -p "$build/bench"
echo "$json], \"overhead_submit_ns_median\": $overhead_submit, \"overhead_complete_ns_median\": $overhead_complete, \"secondary_to_owner_qd1_latency\": $ratio, \"runs\": $runs, \"seconds\": $seconds}" |
  sed 's/^\[/{"loads": [/' > "$build/bench/perf.json"
echo "JSON: $build/bench/perf.json"
