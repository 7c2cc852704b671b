#!/usr/bin/env bash
# Reaping latency: from kill -9 of a secondary doing I/O to nvmuxd having
# reaped it (its queue deleted on the device, its queue id, mailbox, fd
# record and DMA memory freed: the time stamp the reap history records
# when all of that is done), over N kills (default 50), while a survivor
# does verified I/O. Prints each sample, then the median and maximum.
# Real processes: nvmux-emu, nvmuxd -i G -r TRID, nvmux_mp_child (the
# multi-process tests' secondary, which also prints the census).
#   scripts/bench/reap.sh [BUILD_DIR] [KILLS]
# Needs 2 MiB hugepages reserved (scripts/hugepages.sh reserve).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
kills=${2:-50}
emu=$build/tools/emu/nvmux-emu
daemon=$build/primary/nvmuxd
child=$build/test/multiprocess/nvmux_mp_child
for b in "$emu" "$daemon" "$child"; do
  [ -x "$b" ] || { echo "reap.sh: $b is missing: build nvmux-emu, nvmuxd and nvmux_mp_child first" >&2; exit 2; }
done
[[ "$kills" =~ ^[1-9][0-9]*$ ]] || { echo "reap.sh: KILLS '$kills' must be a positive number" >&2; exit 2; }
free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)
[ "$free" -gt 0 ] || { echo "reap.sh: no free 2 MiB hugepages: run scripts/hugepages.sh reserve" >&2; exit 2; }

group=$((70000 + $$ % 20000))
dir=$(mktemp -d /tmp/nvmux-reap-XXXXXX)
trid="trtype:vfiouser traddr:$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${daemon_pid:-}" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ -n "${emu_pid:-}" ] && kill -TERM "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Waits (up to 20 s) until file $1 has a line starting with $2.
wait_line() {
  for _ in $(seq 400); do grep -q "^$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "reap.sh: no '$2' in $1 after 20 s:" >&2; cat "$1" >&2; return 1
}

"$emu" --socket "$dir" >"$dir/emu.log" 2>&1 &
emu_pid=$!
for _ in $(seq 200); do [ -S "$dir/cntrl" ] && break; sleep 0.05; done
"$daemon" -i "$group" -r "$trid" >"$dir/nvmuxd.log" 2>&1 &
daemon_pid=$!
wait_line "$dir/nvmuxd.log" "nvmuxd: group"
"$child" io -i "$group" -r "$trid" --lba 0 --seconds 100000 >"$dir/survivor.log" 2>&1 &
survivor=$!
pids+=("$survivor")
wait_line "$dir/survivor.log" "ready"

samples=()
for k in $(seq "$kills"); do
  log=$dir/victim.log
  "$child" io -i "$group" -r "$trid" --lba 1024 --seconds 100000 >"$log" 2>&1 &
  victim=$!
  wait_line "$log" "ready"
  sleep 0.1  # mid-I/O
  killed=$(date +%s%N)
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  reaped=
  for _ in $(seq 200); do
    census=$("$child" census -i "$group" 2>/dev/null || true)
    reaped=$(grep -o "\[$victim,[0-9]*\]" <<<"$census" | head -n1 | tr -d '[]' | cut -d, -f2 || true)
    [ -n "$reaped" ] && break
    sleep 0.02
  done
  [ -n "$reaped" ] || { echo "reap.sh: kill $k: pid $victim was not reaped within a few seconds" >&2; exit 1; }
  ms=$(awk -v a="$killed" -v b="$reaped" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
  samples+=("$ms")
  echo "kill $k: reaped $ms ms after kill -9"
done
kill -0 "$survivor" || { echo "reap.sh: the survivor stopped (its I/O failed): see $dir/survivor.log" >&2; exit 1; }
printf '%s\n' "${samples[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  printf "reaping latency over %d kills: median %.2f ms, max %.2f ms\n", NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR] }'
