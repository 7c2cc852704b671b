#!/usr/bin/env bash
# nvmux-emu as SPDK's host sees it, beside SPDK's own vfio-user target, in one
# run (issue 15): each device on CPU 1, SPDK's spdk_nvme_perf on CPU 0, 4 KiB
# random reads at QD 1 and QD 32 over a 512 MiB namespace (the size of
# SPDK's RAM disk), against
#   - nvmux-emu, RAM backing (the default), started fresh: its first run is a
#     new user's first run (no warm-up), reported on its own;
#   - nvmux-emu, null backing (no media cost);
#   - SPDK's nvmf_tgt with its 512 MiB RAM disk (the reference).
# nvmux's own driver (nvmux-perf, QD 1) runs on the same devices for
# comparison, and on the null emulator and SPDK's target each driver's cost
# per I/O (SPDK's nvme_overhead beside nvmux-bench-overhead, issue 17). Devices take turns within each run, so drift hits all alike.
# Prints medians of IOPS and average latency per device and load, and the
# ratios the issue names (emulator / SPDK's target).
#
# The machine's state: every measurement is bracketed by nvmux-bench-c2c
# (CPU 0 <-> CPU 1 cache-line handoff, 10 ms). Our 2-vCPU test machine hands
# a line over in about 40 ns in one state (the vCPUs share a cache) and
# about 170 ns in the other, and switches between them within seconds; a
# QD 1 I/O is a chain of such handoffs. A measurement is "near" when both
# probes are under 100 ns, "far" when both are over, else "mixed"; the
# nvmux / SPDK ratios are also given per state, over the runs whose two
# measurements were in the same state.
#
#   scripts/bench/spdk-peer.sh [--short] [--seconds N] [BUILD_DIR] [RUNS]
#   (default 3 runs x 5 s; --short: 1 x 1 s; --seconds: each measurement's
#   length: 1 s makes a state change inside one rarer)
#
# Needs NVMUX_SPDK_DIR (default: ../shared/peers/spdk beside the checkout).
# Reserves hugepages and gives them back; leaves no process behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3
seconds=5
build=$root/build
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=1; seconds=1; shift ;;
    --seconds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "spdk-peer.sh: --seconds '${2:-}' must be a positive number of seconds" >&2; exit 2; }
      seconds=$2; shift 2 ;;
    -*) echo "spdk-peer.sh: unknown option '$1' (allowed: --short, --seconds N, BUILD_DIR, RUNS)" >&2; exit 2 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && build=${positional[0]}
[ ${#positional[@]} -ge 2 ] && runs=${positional[1]}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "spdk-peer.sh: RUNS '$runs' must be a positive number" >&2; exit 2; }
spdk=${NVMUX_SPDK_DIR:-$(cd "$root/.." && pwd)/shared/peers/spdk}
[ -x "$spdk/bin/spdk_nvme_perf" ] || {
  echo "spdk-peer.sh: no SPDK build at $spdk (set NVMUX_SPDK_DIR to one with bin/spdk_nvme_perf)" >&2; exit 2; }
emu=$build/tools/emu/nvmux-emu
perf=$build/tools/perf/nvmux-perf
c2c=$build/tools/bench/nvmux-bench-c2c
for b in "$emu" "$perf" "$c2c"; do
  [ -x "$b" ] || { echo "spdk-peer.sh: $b is missing: build first (cmake --build $build)" >&2; exit 2; }
done
# shellcheck disable=SC1091
source "$spdk/env.sh"
# shellcheck disable=SC1091
source "$root/scripts/bench/machine-state.sh"

work=$(mktemp -d /tmp/nvmux-spdk-peer.XXXXXX)
export SPDK_PEER_RUN=$work/target
emu_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$emu_pid" ] && { kill -TERM "$emu_pid" 2>/dev/null || true; wait "$emu_pid" 2>/dev/null || true; }
  "$spdk/target.sh" stop >/dev/null 2>&1 || true
  spdk_peer_clean
  # DPDK's runtime directories of SPDK's programs that are gone.
  for d in /var/run/dpdk/spdk_pid*; do
    if [ -d "$d" ] && ! kill -0 "${d##*spdk_pid}" 2>/dev/null; then rm -rf "$d" || true; fi
  done
  rm -rf "$work"
  "$root/scripts/hugepages.sh" release >/dev/null || true
  exit $rc
}
trap cleanup EXIT INT TERM
# SPDK's target takes 1 GiB; its perf and nvmux-perf a little each.
"$root/scripts/hugepages.sh" reserve 1024 >/dev/null

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Starts a device; sets spdk_trid (SPDK's spelling) and nvmux_trid.
start_device() {  # emu-ram | emu-null | spdk
  case $1 in
    emu-*)
      rm -rf "$work/emu"
      taskset -c 1 "$emu" --socket "$work/emu" --ns size=512M --backing "${1#emu-}" > "$work/emu.log" 2>&1 &
      emu_pid=$!
      for _ in $(seq 200); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
      [ -S "$work/emu/cntrl" ] || { echo "spdk-peer.sh: nvmux-emu did not start:" >&2; cat "$work/emu.log" >&2; exit 1; }
      spdk_trid="trtype:VFIOUSER traddr:$work/emu subnqn:nqn.2024-01.io.nvmux:emu:NVMUXEMU0001"
      nvmux_trid="trtype:vfiouser traddr:$work/emu" ;;
    spdk)
      spdk_trid=$(SPDK_TARGET_CPUMASK=0x2 "$spdk/target.sh" start vfiouser "$work/spdk-vfu" | tail -n 1)
      nvmux_trid="trtype:vfiouser traddr:$work/spdk-vfu" ;;
  esac
}
stop_device() {
  case $1 in
    emu-*) kill -TERM "$emu_pid"; wait "$emu_pid" 2>/dev/null || true; emu_pid="" ;;
    spdk) "$spdk/target.sh" stop >/dev/null ;;
  esac
}

# "IOPS AVG_US MAX_US" from a Total row.
spdk_perf() {  # depth
  taskset -c 0 "$spdk/bin/spdk_nvme_perf" -g -r "$spdk_trid" -q "$1" -o 4096 -w randread -t "$seconds" -c 0x1 \
    > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  spdk_peer_clean
  awk '/^Total/ { print $3, $5, $7 }' "$work/perf.out"
}
nvmux_perf() {  # depth [nvmux-perf options]
  "$perf" -r "$nvmux_trid" -q "$1" -o 4096 -w randread -t "$seconds" -c 0x1 --no-live "${@:2}" \
    > "$work/perf.out" 2>&1 || { cat "$work/perf.out" >&2; exit 1; }
  awk '/^Total/ { print $3, $5, $7 }' "$work/perf.out"
}

# The drivers' own cost per I/O, QD 1 4 KiB reads (issue 17): SPDK's
# nvme_overhead and nvmux-bench-overhead, which measures the same way;
# prints "SUBMIT_NS COMPLETE_NS" (averages).
spdk_overhead() {
  taskset -c 0 "$spdk/bin/nvme_overhead" -g -r "$spdk_trid" -t "$seconds" -o 4096 > "$work/overhead.out" 2>&1 ||
    { cat "$work/overhead.out" >&2; exit 1; }
  spdk_peer_clean
  awk -F'=' '/^submit/ { split($2, s, ","); sub_ns = s[1] + 0 } /^complete/ { split($2, c, ","); com = c[1] + 0 }
    END { print sub_ns, com }' "$work/overhead.out"
}
nvmux_overhead() {
  taskset -c 0 "$build/tools/bench/nvmux-bench-overhead" -r "$nvmux_trid" -t "$seconds" -c 0 "$@" > "$work/overhead.out" 2>&1 ||
    { cat "$work/overhead.out" >&2; exit 1; }
  awk '$1 == "submit" { s = $3 } $1 == "complete" { c = $3 } END { print s, c }' "$work/overhead.out"
}
# Runs a measurement between two handoff probes: prints its output, then
# "STATE PRE_NS POST_NS".
bracketed() {
  local pre post out
  pre=$(c2c_ns)
  out=$("$@") || exit 1
  post=$(c2c_ns)
  echo "$out $(machine_state "$pre" "$post") $pre $post"
}

# Per run r: value[KEY#r] (IOPS, or overhead total ns) and state[KEY#r].
declare -A value state
declare -A ovh_total
add_overhead() {  # key "SUBMIT COMPLETE STATE PRE POST"
  local v total
  read -r -a v <<< "$2"
  total=$(awk -v a="${v[0]}" -v b="${v[1]}" 'BEGIN { print a + b }')
  ovh_total[$1]+="$total "
  value[$1#$r]=$total
  state[$1#$r]=${v[2]}
  printf '  %-34s submit %8.1f ns  complete %8.1f ns  [%s: c2c %s/%s ns]\n' "$1" "${v[0]}" "${v[1]}" "${v[2]}" "${v[3]}" "${v[4]}"
}

declare -A iops lat
add() {  # key "IOPS AVG MAX STATE PRE POST"
  local v
  read -r -a v <<< "$2"
  iops[$1]+="${v[0]} "
  lat[$1]+="${v[1]} "
  value[$1#$r]=${v[0]}
  state[$1#$r]=${v[3]}
  printf '  %-34s %12.0f IOPS  avg %8.2f us  max %10.2f us  [%s: c2c %s/%s ns]\n' "$1" "${v[0]}" "${v[1]}" "${v[2]}" \
    "${v[3]}" "${v[4]}" "${v[5]}"
}

echo "spdk-peer.sh: $runs run(s) x $seconds s, 4 KiB randread, devices on CPU 1, perf on CPU 0; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= runs; r++)); do
  echo "run $r"
  for dev in emu-ram emu-null spdk; do
    start_device "$dev"
    # The first QD 1 run on a fresh device: no warm-up (a new user's first run).
    add "$dev spdk_perf qd1 first" "$(bracketed spdk_perf 1)"
    add "$dev spdk_perf qd1" "$(bracketed spdk_perf 1)"
    add "$dev spdk_perf qd32" "$(bracketed spdk_perf 32)"
    add "$dev nvmux_perf qd1" "$(bracketed nvmux_perf 1)"
    # The emulator offers shadow doorbells, which SPDK configures on pcie
    # only: nvmux-perf also with SPDK's choice (every doorbell written).
    [ "$dev" = spdk ] || add "$dev nvmux_perf qd1 no-shadow" "$(bracketed nvmux_perf 1 --no-shadow-doorbells)"
    if [ "$dev" != emu-ram ]; then
      add_overhead "$dev spdk overhead" "$(bracketed spdk_overhead)"
      add_overhead "$dev nvmux overhead" "$(bracketed nvmux_overhead)"
      [ "$dev" = spdk ] || add_overhead "$dev nvmux overhead no-shadow" "$(bracketed nvmux_overhead --no-shadow-doorbells)"
    fi
    stop_device "$dev"
  done
done

m() { printf '%s\n' ${1} | median; }
echo
echo "Medians over $runs run(s) (IOPS / average latency in us):"
printf '%-12s %22s %22s %22s %22s\n' device "spdk_perf QD1 (first)" "spdk_perf QD1" "spdk_perf QD32" "nvmux-perf QD1"
for dev in emu-ram emu-null spdk; do
  row=$(printf '%-12s' "$dev")
  for load in "spdk_perf qd1 first" "spdk_perf qd1" "spdk_perf qd32" "nvmux_perf qd1"; do
    k="$dev $load"
    row+=$(printf ' %11.0f / %7.2f' "$(m "${iops[$k]}")" "$(m "${lat[$k]}")")
  done
  echo "$row"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
echo
echo "Goals (issue 15), emulator RAM backing / SPDK's target, same run:"
echo "  spdk_perf QD32 IOPS:         $(ratio "$(m "${iops[emu-ram spdk_perf qd32]}")" "$(m "${iops[spdk spdk_perf qd32]}")")x (goal >= 1.2)"
echo "  spdk_perf QD1 avg latency:   $(ratio "$(m "${lat[emu-ram spdk_perf qd1]}")" "$(m "${lat[spdk spdk_perf qd1]}")")x (goal <= 0.8)"
echo "  first QD1 run / steady QD1:  $(ratio "$(m "${iops[emu-ram spdk_perf qd1 first]}")" "$(m "${iops[emu-ram spdk_perf qd1]}")")x IOPS (goal >= 0.9)"
echo "  null backing, QD32 IOPS:     $(ratio "$(m "${iops[emu-null spdk_perf qd32]}")" "$(m "${iops[spdk spdk_perf qd32]}")")x"
echo "nvmux-perf / spdk_perf, QD1 IOPS, same device (no-shadow: nvmux-perf --no-shadow-doorbells, SPDK's choice on vfio-user):"
for dev in emu-ram emu-null spdk; do
  line="  $dev: $(ratio "$(m "${iops[$dev nvmux_perf qd1]}")" "$(m "${iops[$dev spdk_perf qd1]}")")x"
  [ "$dev" = spdk ] ||
    line+=", no-shadow $(ratio "$(m "${iops[$dev nvmux_perf qd1 no-shadow]}")" "$(m "${iops[$dev spdk_perf qd1]}")")x"
  echo "$line"
done
echo "nvmux-bench-overhead / nvme_overhead, submit + complete ns (medians), same device (issue 17 goal <= 0.6):"
for dev in emu-null spdk; do
  echo "  $dev: $(m "${ovh_total[$dev nvmux overhead]}") / $(m "${ovh_total[$dev spdk overhead]}") ns = $(ratio \
    "$(m "${ovh_total[$dev nvmux overhead]}")" "$(m "${ovh_total[$dev spdk overhead]}")")x"
done
echo "  emu-null no-shadow: $(m "${ovh_total[emu-null nvmux overhead no-shadow]}") ns = $(ratio \
  "$(m "${ovh_total[emu-null nvmux overhead no-shadow]}")" "$(m "${ovh_total[emu-null spdk overhead]}")")x"
# Median of A#r / B#r over the runs where both were measured in STATE.
state_ratio() {  # A B STATE
  local list="" n=0
  for ((i = 1; i <= runs; i++)); do
    [ "${state[$1#$i]:-}" = "$3" ] && [ "${state[$2#$i]:-}" = "$3" ] || continue
    list+="$(awk -v a="${value[$1#$i]}" -v b="${value[$2#$i]}" 'BEGIN { if (b > 0) print a / b }') "
    n=$((n + 1))
  done
  if [ "$n" -eq 0 ]; then echo "-- (no run)"; else printf '%.2fx (%d run(s))' "$(m "$list")" "$n"; fi
}
echo "The same ratios by machine state (runs whose two measurements were both near or both far):"
for dev in emu-ram emu-null spdk; do
  echo "  QD1 IOPS $dev: near $(state_ratio "$dev nvmux_perf qd1" "$dev spdk_perf qd1" near)," \
    "far $(state_ratio "$dev nvmux_perf qd1" "$dev spdk_perf qd1" far)"
done
echo "  overhead emu-null no-shadow: near $(state_ratio "emu-null nvmux overhead no-shadow" "emu-null spdk overhead" near)," \
  "far $(state_ratio "emu-null nvmux overhead no-shadow" "emu-null spdk overhead" far)"
for dev in emu-null spdk; do
  echo "  overhead $dev: near $(state_ratio "$dev nvmux overhead" "$dev spdk overhead" near)," \
    "far $(state_ratio "$dev nvmux overhead" "$dev spdk overhead" far)"
done
