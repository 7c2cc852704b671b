#!/usr/bin/env bash
# nvmux-emu's own throughput: 4 KiB random reads per second at QD 128 with
# the null and the RAM backing, engine pinned to CPU 1 and a minimal polling
# client on CPU 0; medians of 5 runs x 3 s (--short: 3 runs x 1 s, for CI).
#   scripts/bench/emu.sh [--short] [BUILD_DIR] [-- extra nvmux-bench-emu options]
# Needs no hugepages and no root; run it on an otherwise idle machine (it
# prints the engine's share of its CPU, which shows contention).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=5
seconds=3
build=$root/build
while [ $# -gt 0 ]; do
  case "$1" in
    --short) runs=3; seconds=1; shift ;;
    --) shift; break ;;
    -*) echo "emu.sh: unknown option '$1' (allowed: --short, BUILD_DIR, -- OPTIONS)" >&2; exit 2 ;;
    *) build=$1; shift ;;
  esac
done
bin=$build/tools/bench/nvmux-bench-emu
[ -x "$bin" ] || { echo "emu.sh: build first (cmake --build $build --target nvmux-bench-emu)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || echo "emu.sh: warning: one CPU only; engine and client share it" >&2
echo "== nvmux: emulator throughput ($runs runs x $seconds s per backing; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
exec "$bin" --runs "$runs" --seconds "$seconds" "$@"
