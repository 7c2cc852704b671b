#!/usr/bin/env bash
# Primary init and secondary attach times, medians of N runs (default 10),
# beside the start time of a do-nothing process measured in the same run:
# first the bare group (Group::Open), then with a controller (nvmux-emu
# started here): the primary attaches it, each secondary runs Env::Init,
# Controller::Connect and creates one I/O queue pair.
#   scripts/bench/attach.sh [BUILD_DIR] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
runs=${2:-10}
bench=$build/tools/bench/nvmux-bench-attach
emu=$build/tools/emu/nvmux-emu
[ -x "$bench" ] && [ -x "$emu" ] || { echo "attach.sh: build first (scripts/test.sh or cmake --build $build)" >&2; exit 2; }
"$root/scripts/hugepages.sh" reserve
dir=$(mktemp -d /tmp/nvmux-attach-XXXXXX)
emu_pid=
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
  rm -rf "$dir"
  "$root/scripts/hugepages.sh" release
}
trap cleanup EXIT
"$bench" -n "$runs"
echo
"$emu" --socket "$dir" >/dev/null 2>&1 &
emu_pid=$!
for _ in $(seq 100); do [ -S "$dir/cntrl" ] && break; sleep 0.05; done
"$bench" -n "$runs" -r "trtype:vfiouser traddr:$dir"
