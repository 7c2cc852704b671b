#!/usr/bin/env bash
# Processes that share cores (issue 17), three parts, called by events.sh:
#
# shared: nvmux-emu --backing null, nvmuxd (the primary) and 4, then 8,
#   nvmux-perf secondaries (-i GROUP) at QD 4 each, 4 KiB randread, all on
#   the machine's two CPUs together: the emulator (unless --pin-device: on
#   CPU 1) and nvmuxd unpinned, the secondaries' workers alternately on CPU
#   0 and CPU 1 (-c 0x1 / 0x2).
#   --mode poll against --mode hybrid: the aggregate IOPS (sum of the
#   secondaries' Total rows) and the p99 latency of all their I/O together
#   (their -LL histograms merged bucket by bucket; same bucket edges in
#   every process), the IOPS of the secondary served worst (the sum hides
#   it), then hybrid's aggregate IOPS / poll's (goal: >= 5). Medians of RUNS.
# core: one secondary at QD 16 on the device's own CPU (CPU 1; the emulator
#   pinned there for this part), as a tool started on the wrong core would
#   be: each mode's IOPS and average latency, and hybrid's and event's IOPS
#   over poll's. A polling process and the device then take turns by
#   scheduler slices; a waiting one gives the device the CPU.
# idle: nvmuxd plus 4 idle secondaries in event mode (nvmux-event-loop -i
#   GROUP: each attached, created its I/O queue pair in event mode and
#   blocks in epoll on its event fd with no I/O) over IDLE seconds: the CPU
#   each used, utime+stime from /proc/PID/stat before and after (clock
#   ticks), and the sum of its threads' run time from
#   /proc/PID/task/*/schedstat (nanoseconds, finer); the total of nvmuxd and
#   the secondaries as a share of one CPU (goal: < 0.1 %); the emulator's
#   printed beside it (not in the total).
#
# --device spdk: the same with SPDK's vfio-user target (NVMUX_SPDK_DIR,
#   default ../shared/peers/spdk; its reactor spins on CPU 1, a RAM disk) as
#   the device instead of the emulator: a device that takes its core whether
#   busy or not, as a real SSD's firmware does not but a software target does.
#
#   scripts/bench/events-shared.sh [--short] [--only shared|core|idle] [--pin-device] [--device emu|spdk] [--idle-seconds N] [BUILD_DIR] [RUNS]
#     default: 3 runs x 5 s, idle 60 s; --short: 1 run x 2 s, idle 5 s
#
# Needs free hugepages (scripts/hugepages.sh reserve); reserves and releases
# none itself. Leaves no process behind (nvmuxd removes its group on
# SIGTERM).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
seconds=5
idle_seconds=60
idle_given=""
only=""
device=emu
pin_device=""
build=$root/build
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=2; [ -n "$idle_given" ] || idle_seconds=5; shift ;;
    --only)
      [[ "${2:-}" =~ ^(shared|core|idle)$ ]] || { echo "events-shared.sh: --only '${2:-}': allowed shared, core, idle" >&2; exit 2; }
      only=$2; shift 2 ;;
    --pin-device) pin_device=1; shift ;;
    --device)
      [[ "${2:-}" =~ ^(emu|spdk)$ ]] || { echo "events-shared.sh: --device '${2:-}': allowed emu, spdk" >&2; exit 2; }
      device=$2; shift 2 ;;
    --idle-seconds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "events-shared.sh: --idle-seconds '${2:-}': a whole number of seconds >= 1" >&2; exit 2; }
      idle_seconds=$2; idle_given=1; shift 2 ;;
    -*) echo "events-shared.sh: unknown option '$1' (allowed: --short, --only shared|core|idle, --pin-device, --device emu|spdk, --idle-seconds N, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) if [[ "$1" =~ ^[0-9]+$ ]]; then runs=$1; else build=$1; fi; shift ;;
  esac
done
emu=$build/tools/emu/nvmux-emu
perf=$build/tools/perf/nvmux-perf
daemon=$build/primary/nvmuxd
loop=$build/tools/examples/nvmux-event-loop
for b in "$emu" "$perf" "$daemon" "$loop"; do
  [ -x "$b" ] || { echo "events-shared.sh: $b is missing: build first (cmake --build $build)" >&2; exit 2; }
done
free=$(awk '/HugePages_Free/ { print $2 }' /proc/meminfo)
need=256; [ "$device" = emu ] || need=800  # SPDK's target takes 1 GiB of its own
[ "${free:-0}" -ge "$need" ] || { echo "events-shared.sh: only ${free:-0} free hugepages (--device $device needs $need): run scripts/hugepages.sh reserve first" >&2; exit 2; }

work=$(mktemp -d /tmp/nvmux-bench-events-shared.XXXXXX)
group=$((70000 + $$ % 20000))
emu_pid="" daemon_pid="" children=() spdk_started=""
spdk=${NVMUX_SPDK_DIR:-$(cd "$root/.." && pwd)/shared/peers/spdk}
if [ "$device" = spdk ] && [ ! -x "$spdk/target.sh" ]; then
  echo "events-shared.sh: --device spdk: no SPDK peer at $spdk (set NVMUX_SPDK_DIR)" >&2; exit 2
fi
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for p in "${children[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${children[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -z "$daemon_pid" ] || { kill -TERM "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; }
  [ -z "$emu_pid" ] || { kill -TERM "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }
  [ -z "$spdk_started" ] || "$spdk/target.sh" stop > /dev/null 2>&1 || true
  for d in /var/run/dpdk/spdk_pid*; do
    if [ -d "$d" ] && ! kill -0 "${d##*spdk_pid}" 2>/dev/null; then rm -rf "$d" || true; fi
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Waits (up to 30 s) until file $1 has a line starting with $2.
wait_line() {
  for _ in $(seq 600); do grep -q "^$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "events-shared.sh: no '$2' in $1 after 30 s:" >&2; cat "$1" >&2; return 1
}

if [ "$device" = spdk ]; then
  export SPDK_PEER_RUN=$work/spdk-target
  SPDK_TARGET_CPUMASK=0x2 "$spdk/target.sh" start vfiouser "$work/spdk-vfu" > /dev/null
  spdk_started=1
  device_name="SPDK's vfio-user target (RAM, reactor on CPU 1)"
  trid="trtype:vfiouser traddr:$work/spdk-vfu"
else
  mkdir -p "$work/emu"
  "$emu" --socket "$work/emu" --backing null --ns size=1G > "$work/emu.log" 2>&1 &
  emu_pid=$!
  for _ in $(seq 200); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
  [ -S "$work/emu/cntrl" ] || { echo "events-shared.sh: nvmux-emu did not start:" >&2; cat "$work/emu.log" >&2; exit 1; }
  device_name="nvmux-emu (null)"
  trid="trtype:vfiouser traddr:$work/emu"
fi
"$daemon" -i "$group" -r "$trid" > "$work/nvmuxd.log" 2>&1 &
daemon_pid=$!
wait_line "$work/nvmuxd.log" "nvmuxd: group"
echo "== processes sharing 2 cores: $device_name + nvmuxd -i $group; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- shared: N secondaries at QD 4, poll against hybrid ----
# One round: N perf secondaries at once; prints "aggregate_iops p99_us
# least_iops" (the last: the secondary served worst, which the sum hides).
shared_round() {  # $1 = secondaries, $2 = mode
  local pids=() i
  for i in $(seq "$1"); do
    "$perf" -i "$group" -q 4 -o 4096 -w randread -t "$seconds" -a 1 -c "$( ((i % 2)) && echo 0x1 || echo 0x2)" --no-live \
      --mode "$2" ${NVMUX_BENCH_PERF_ARGS:-} -LL > "$work/perf.$i.out" 2>&1 &
    pids+=($!)
  done
  for i in $(seq "$1"); do
    wait "${pids[$((i - 1))]}" || { echo "events-shared.sh: secondary $i (--mode $2) failed:" >&2; cat "$work/perf.$i.out" >&2; exit 1; }
  done
  # Total rows summed; histogram buckets ("start - end: cumulative% (count)")
  # summed by their start, then the end of the bucket where 99 % is reached.
  for i in $(seq "$1"); do cat "$work/perf.$i.out"; done | awk '
    /^Total/ { iops += $3; if (least == "" || $3 + 0 < least) least = $3 + 0 }
    /^ *[0-9.]+ - +[0-9.]+: / { s = $1; e = $3; sub(":", "", e); c = $NF; sub("\\)", "", c); n[s] += c; end[s] = e; all += c }
    END {
      k = 0; for (s in n) keys[++k] = s + 0
      for (a = 1; a <= k; a++) for (b = a + 1; b <= k; b++) if (keys[b] < keys[a]) { t = keys[a]; keys[a] = keys[b]; keys[b] = t }
      p99 = "nan"; cum = 0
      for (a = 1; a <= k; a++) { s = sprintf("%.3f", keys[a]); cum += n[s]; if (cum >= 0.99 * all) { p99 = end[s]; break } }
      printf "%.0f %s %.0f\n", iops, p99, least }'
}
if [ -z "$only" ] || [ "$only" = shared ]; then
  [ -z "$pin_device" ] || [ -z "$emu_pid" ] || taskset -a -p 0x2 "$emu_pid" > /dev/null
  printf '%-38s %12s %10s %12s\n' "secondaries x QD4, 4 KiB randread" "IOPS (sum)" "p99 us" "least IOPS"
  for n in 4 8; do
    declare -A agg=() worst=()
    for mode in ${NVMUX_BENCH_MODES:-poll hybrid}; do
      iops="" p99="" least=""
      for _ in $(seq "$runs"); do
        read -r i p w < <(shared_round "$n" "$mode")
        iops+="$i " p99+="$p " least+="$w "
      done
      agg[$mode]=$(printf '%s\n' $iops | median)
      worst[$mode]=$(tr ' ' '\n' <<<"$least" | grep . | median)
      printf '%-38s %12.0f %10s %12.0f   runs: [%s] [%s]\n' "$n secondaries --mode $mode" "${agg[$mode]}" \
        "$(printf '%s\n' $p99 | median)" "${worst[$mode]}" "${iops% }" "${p99% }"
    done
    echo "  $n secondaries: hybrid / poll aggregate IOPS = $(awk -v h="${agg[hybrid]}" -v p="${agg[poll]}" \
      'BEGIN { if (p > 0) printf "%.2f", h / p; else print "nan" }') (goal >= 5);"\
      "the secondary served worst: $(awk -v h="${worst[hybrid]}" -v p="${worst[poll]}" \
      'BEGIN { if (p > 0) printf "%.1f", h / p; else print "nan" }')"
    unset agg worst
  done
  echo "medians of $runs run(s) x ${seconds} s (after 1 s warm-up)${pin_device:+, the emulator on CPU 1}; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  [ -z "$emu_pid" ] || taskset -a -p 0x3 "$emu_pid" > /dev/null
fi

# ---- core: one secondary on the device's CPU ----
if [ -z "$only" ] || [ "$only" = core ]; then
  [ -z "$emu_pid" ] || taskset -a -p 0x2 "$emu_pid" > /dev/null
  printf '%-38s %12s %10s\n' "1 secondary x QD16 on CPU 1 (device's)" "IOPS" "avg us"
  declare -A core=()
  for mode in poll hybrid event; do
    iops="" lat=""
    for _ in $(seq "$runs"); do
      # shellcheck disable=SC2086  # extra perf arguments, split on purpose
      "$perf" -i "$group" -q 16 -o 4096 -w randread -t "$seconds" -a 1 -c 0x2 --no-live --mode "$mode" \
        ${NVMUX_BENCH_PERF_ARGS:-} > "$work/core.out" 2>&1 || {
        echo "events-shared.sh: the secondary on CPU 1 (--mode $mode) failed:" >&2; cat "$work/core.out" >&2; exit 1; }
      read -r i l < <(awk '/^Total/ { print $3, $5 }' "$work/core.out")
      iops+="$i " lat+="$l "
    done
    core[$mode]=$(tr ' ' '\n' <<<"$iops" | grep . | median)
    printf '%-38s %12.0f %10.1f   runs: [%s]\n' "--mode $mode" "${core[$mode]}" "$(tr ' ' '\n' <<<"$lat" | grep . | median)" "${iops% }"
  done
  echo "  hybrid / poll = $(awk -v a="${core[hybrid]}" -v b="${core[poll]}" 'BEGIN { printf "%.1f", a / b }'),"\
    "event / poll = $(awk -v a="${core[event]}" -v b="${core[poll]}" 'BEGIN { printf "%.1f", a / b }')"
  [ -z "$emu_pid" ] || taskset -a -p 0x3 "$emu_pid" > /dev/null
fi

# ---- idle: nvmuxd + 4 event-mode secondaries doing nothing ----
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
if [ -z "$only" ] || [ "$only" = idle ]; then
  idle_pids=()
  for i in 1 2 3 4; do
    "$loop" -i "$group" > "$work/idle.$i.out" 2>&1 &
    children+=($!) idle_pids+=($!)
  done
  for i in 1 2 3 4; do wait_line "$work/idle.$i.out" "idle"; done
  sleep 1  # settle: the attaches' own work is not idling
  names=(nvmuxd idle-1 idle-2 idle-3 idle-4)
  procs=("$daemon_pid" "${idle_pids[@]}")
  [ -z "$emu_pid" ] || { names+=(nvmux-emu); procs+=("$emu_pid"); }
  t0=() n0=()
  for p in "${procs[@]}"; do t0+=("$(ticks "$p")") n0+=("$(run_ns "$p")"); done
  sleep "$idle_seconds"
  hz=$(getconf CLK_TCK)
  echo "== idle ${idle_seconds} s: nvmuxd + 4 secondaries in event mode (nvmux-event-loop -i $group), no I/O"
  printf '%-10s %8s %12s %12s\n' process pid "CPU ticks" "run ms"
  total_ticks=0 total_ns=0
  for k in "${!procs[@]}"; do
    p=${procs[$k]}
    dt=$(( $(ticks "$p") - t0[k] )) dn=$(( $(run_ns "$p") - n0[k] ))
    printf '%-10s %8s %12s %12.3f\n' "${names[$k]}" "$p" "$dt" "$(awk -v n="$dn" 'BEGIN { print n / 1e6 }')"
    if [ "${names[$k]}" != nvmux-emu ]; then total_ticks=$((total_ticks + dt)) total_ns=$((total_ns + dn)); fi
  done
  awk -v t="$total_ticks" -v n="$total_ns" -v hz="$hz" -v s="$idle_seconds" 'BEGIN {
    printf "nvmuxd + 4 secondaries: %.3f %% of one CPU by utime+stime (%d ticks of 1/%d s), %.4f %% by run time (goal < 0.1 %%)\n",
      t / hz / s * 100, t, hz, n / 1e9 / s * 100 }'
  for p in "${idle_pids[@]}"; do kill -TERM "$p"; done
  for i in 1 2 3 4; do
    wait "${idle_pids[$((i - 1))]}" || { echo "events-shared.sh: idle secondary $i failed:" >&2; cat "$work/idle.$i.out" >&2; exit 1; }
    echo "  idle-$i: $(grep '^wakeups' "$work/idle.$i.out")"
  done
  children=()
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
