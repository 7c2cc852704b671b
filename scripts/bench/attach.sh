#!/usr/bin/env bash
# Primary init and secondary attach times, medians of N runs (default 10),
# beside the start time of a do-nothing process measured in the same run.
#   scripts/bench/attach.sh [BUILD_DIR] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
runs=${2:-10}
[ -x "$build/tools/bench/nvmux-bench-attach" ] || { echo "attach.sh: build first (scripts/test.sh or cmake --build $build)" >&2; exit 2; }
"$root/scripts/hugepages.sh" reserve
trap '"$root/scripts/hugepages.sh" release' EXIT
"$build/tools/bench/nvmux-bench-attach" -n "$runs"
