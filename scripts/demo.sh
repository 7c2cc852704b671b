#!/usr/bin/env bash
# The README's main job, on the embedded default: installs what is missing,
# builds, reserves hugepages, starts nvmux-emu and the primary nvmuxd, runs
# nvmux-identify and a short nvmux-perf as secondaries, prints their output,
# and stops everything it started, leaving nothing behind (also on failure or
# Ctrl-C). Works from any directory and twice in a row.
#
#   scripts/demo.sh [GROUP_ID]      (default group 0)
#
# Without root, after root ran `scripts/setup.sh user NAME` once:
#   runuser -u NAME -- env NVMUX_BUILD_DIR=/tmp/nvmux-build-NAME scripts/demo.sh
# (NVMUX_BUILD_DIR: a build directory that user may write, default build/;
# the hugepages setup.sh reserved are used and left reserved.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
group=${1:-0}
build="${NVMUX_BUILD_DIR:-$root/build}"
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
if [ "$(id -u)" -ne 0 ]; then
  echo "   running as $(id -un) (uid $(id -u)), without root: groups under \${NVMUX_RUN_DIR:-/var/run}/dpdk"
fi
echo "== nvmux demo: build ($build)"
cmake -S "$root" -B "$build" >/dev/null
# One line that updates with the build's progress ([done/total] and the file),
# the full log in build/build.log. A first build takes 10-20 minutes on 2
# cores; later ones only rebuild what changed.
if [ ! -x "$build/tools/perf/nvmux-perf" ]; then
  echo "   first build: roughly 10-20 minutes on 2 cores (full log: $build/build.log)"
fi
progress() {
  local line pct step=-1 shown=""
  while IFS= read -r line; do
    printf '%s\n' "$line" >> "$build/build.log"
    pct=""
    if [[ "$line" =~ ^\[\ *([0-9]+)%\] ]]; then pct=${BASH_REMATCH[1]}            # make: [ 45%]
    elif [[ "$line" =~ ^\[([0-9]+)/([0-9]+)\] ]]; then                          # ninja: [12/300]
      pct=$((100 * BASH_REMATCH[1] / BASH_REMATCH[2]))
    fi
    [ -n "$pct" ] || continue
    shown=${line:0:100}
    if [ -t 1 ]; then
      printf '\r   %-100s' "$shown"
    elif [ $((pct / 10)) -gt "$step" ]; then
      step=$((pct / 10))
      echo "   $shown"       # not a terminal: a line every 10 %
    fi
  done
  if [ -t 1 ] && [ -n "$shown" ]; then printf '\r%-104s\r' ""; fi
  echo "   build done"
}
: > "$build/build.log"
if ! cmake --build "$build" -j "$(nproc)" 2>&1 | progress; then
  echo "demo.sh: the build failed; its errors:" >&2
  grep -E -A3 "error|warning:" "$build/build.log" | head -60 >&2
  exit 1
fi

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

echo "== nvmux demo: nvmux-identify -i $group (a secondary: the group's controllers, found by the group id alone)"
"$build/tools/identify/nvmux-identify" -i "$group"

echo "== nvmux demo: nvmux-perf -i $group -q 32 -o 4096 -w randread -t 5 (a secondary)"
"$build/tools/perf/nvmux-perf" -i "$group" -q 32 -o 4096 -w randread -t 5 -c 0x1

echo "== nvmux demo: the group as nvmux-manage sees it"
"$build/tools/manage/nvmux-manage" status -i "$group"
echo "== nvmux demo: stopping"
