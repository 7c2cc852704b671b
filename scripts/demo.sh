#!/usr/bin/env bash
# The README's main job, on the embedded default: installs what is missing,
# builds, reserves hugepages, starts nvmux-emu and the primary nvmuxd, runs
# nvmux-identify and a short nvmux-perf as secondaries, prints their output,
# and stops everything it started, leaving nothing behind (also on failure or
# Ctrl-C). Works from any directory and twice in a row.
#
#   scripts/demo.sh [GROUP_ID]      (default group 0)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
group=${1:-0}
build="$root/build"
work=$(mktemp -d /tmp/nvmux-demo.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Newest first: secondaries and nvmuxd stop before the device they use.
  local rev=()
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do rev+=("${pids[$i]}"); done
  for pid in "${rev[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  for pid in "${rev[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -x "$build/tools/manage/nvmux-manage" ] && "$build/tools/manage/nvmux-manage" cleanup -i "$group" --yes >/dev/null 2>&1 || true
  rm -rf "$work"
  "$root/scripts/hugepages.sh" release || true
  exit $rc
}
trap cleanup EXIT INT TERM

echo "== nvmux demo: dependencies"
"$root/scripts/deps.sh"
echo "== nvmux demo: build ($build)"
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "== nvmux demo: hugepages"
"$root/scripts/hugepages.sh" reserve 512
"$root/scripts/hugepages.sh" status

emu="$build/tools/emu/nvmux-emu"
echo "== nvmux demo: starting nvmux-emu (socket $work/emu)"
mkdir -p "$work/emu"
"$emu" --socket "$work/emu" > "$work/emu.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/emu/cntrl" ] && break; sleep 0.05; done
[ -S "$work/emu/cntrl" ] || { echo "nvmux-emu did not come up:"; cat "$work/emu.log"; exit 1; }
trid="trtype:vfiouser traddr:$work/emu"
echo "nvmux-emu serving $trid"

echo "== nvmux demo: starting nvmuxd -i $group -r '$trid'"
"$build/primary/nvmuxd" -i "$group" -r "$trid" > "$work/nvmuxd.log" 2>&1 &
pids+=($!)
ready="nvmuxd: group $group ready"
for _ in $(seq 200); do grep -q "$ready" "$work/nvmuxd.log" 2>/dev/null && break; sleep 0.05; done
cat "$work/nvmuxd.log"
grep -q "$ready" "$work/nvmuxd.log" || { echo "nvmuxd did not come up"; exit 1; }

echo "== nvmux demo: nvmux-identify -i $group -r '$trid' (a secondary)"
"$build/tools/identify/nvmux-identify" -i "$group" -r "$trid"

echo "== nvmux demo: nvmux-perf -i $group -q 32 -o 4096 -w randread -t 5 (a secondary)"
"$build/tools/perf/nvmux-perf" -i "$group" -r "$trid" -q 32 -o 4096 -w randread -t 5 -c 0x1

echo "== nvmux demo: the group as nvmux-manage sees it"
"$build/tools/manage/nvmux-manage" status -i "$group"
echo "== nvmux demo: stopping"
