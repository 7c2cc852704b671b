#!/usr/bin/env bash
# The first command after idling (issue 3): nvmux-emu on CPU 1, the driver
# (nvmux-bench-wake, standalone) on CPU 0; QD 1 4 KiB reads after 1, 5, 50
# and 200 ms of idleness, beside the machine's own thread wake-up after the
# same idle time (the reference, measured in the same run); medians of 21
# rounds each.
#   scripts/bench/wake.sh [--no-kick] [BUILD_DIR] [-- extra nvmux-bench-wake options]
# --no-kick: the driver writes doorbells without the ioeventfd kick, as SPDK's
# host and a Linux guest (through QEMU) do: what their first command costs.
# Reserves hugepages and gives them back; leaves no process behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/build
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    --no-kick) export NVMUX_VFIOUSER_NO_KICK=1; shift ;;
    -*) echo "wake.sh: unknown option '$1' (allowed: --no-kick, BUILD_DIR, -- OPTIONS)" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
bench=$build/tools/bench/nvmux-bench-wake
emu=$build/tools/emu/nvmux-emu
[ -x "$bench" ] && [ -x "$emu" ] || { echo "wake.sh: build first (cmake --build $build)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "wake.sh: needs two CPUs (device and driver apart)" >&2; exit 2; }
dir=$(mktemp -d /tmp/nvmux-wake-XXXXXX)
emu_pid=
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
  rm -rf "$dir"
  "$root/scripts/hugepages.sh" release >/dev/null || true
}
trap cleanup EXIT
"$root/scripts/hugepages.sh" reserve >/dev/null
taskset -c 1 "$emu" --socket "$dir" >/dev/null 2>&1 &
emu_pid=$!
for _ in $(seq 100); do [ -S "$dir/cntrl" ] && break; sleep 0.05; done
echo "== nvmux: first command after idle${NVMUX_VFIOUSER_NO_KICK:+, doorbells without the kick, as the SPDK host writes them} (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
"$bench" -r "trtype:vfiouser traddr:$dir" -c 0 --device-cpu 1 "$@"
