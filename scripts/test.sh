#!/usr/bin/env bash
# The README's test command: installs what is missing, builds nvmux twice
# (plain, and with ASan+UBSan), and runs the whole CTest suite on each. The
# suite reserves hugepages itself (fixture nvmux_env), ends with a check that
# nothing was left behind, and gives the hugepages back. In CI (or with
# NVMUX_FUZZ_SECONDS) it first fuzzes nvmux-emu. Works from any directory;
# prints CTest's summary last. Exit status: non-zero on any failure.
#
#   scripts/test.sh            both builds
#   NVMUX_TEST_BUILDS=plain scripts/test.sh    one of: plain, asan, "plain asan"
#   NVMUX_FUZZ_SECONDS=60 scripts/test.sh      also fuzz nvmux-emu (always when CI=true)
#   NVMUX_TEST_USER=NAME scripts/test.sh       also the main job as user NAME (always when CI=true, as nvmux-ci)
#   NVMUX_SPDK_DIR=../shared/peers/spdk scripts/test.sh   also the interop tests against SPDK
#   (.ci/run sets it, and NVMUX_QEMU_DIR, when ../shared/peers holds them)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/deps.sh"

jobs=$(nproc)
# The suite's hugepages (the fixture reserves them, and gives them back): the
# emulator's populated RAM namespaces and SPDK's target (1 GiB) take theirs
# from the same pool as every DPDK process, two tests at a time.
export NVMUX_HUGEPAGES=${NVMUX_HUGEPAGES:-2048}
builds=${NVMUX_TEST_BUILDS:-plain asan}
status=0
# Fuzzing (clang, libFuzzer) first, in CI or when asked: NVMUX_FUZZ_SECONDS=N
# (default 60 in CI). It runs before the CTest runs so that CTest's summary
# stays the last thing printed.
if [ "${CI:-}" = true ] || [ -n "${NVMUX_FUZZ_SECONDS:-}" ]; then
  fuzz_seconds=${NVMUX_FUZZ_SECONDS:-60}
  echo "== nvmux: fuzz ($fuzz_seconds s)"
  "$root/scripts/fuzz.sh" "$fuzz_seconds" || status=1
fi

for kind in $builds; do
  case "$kind" in
    plain) dir=build; extra=() ;;
    asan) dir=build-asan; extra=(-DNVMUX_SANITIZE=address,undefined) ;;
    *) echo "test.sh: unknown build '$kind' (allowed: plain, asan)" >&2; exit 2 ;;
  esac
  echo "== nvmux: $kind build ($dir)"
  cmake -S "$root" -B "$root/$dir" -DNVMUX_WERROR=ON "${extra[@]}" >/dev/null
  # One build; on failure show its errors (warnings are errors) and stop.
  if ! cmake --build "$root/$dir" -j "$jobs" > "$root/$dir/build.log" 2>&1; then
    grep -E -A3 "error|warning:" "$root/$dir/build.log" | head -200
    echo "test.sh: the $kind build failed (full log: $dir/build.log)" >&2
    exit 1
  fi
  # The benchmark in its short mode (seconds), in CI, before the tests so
  # that CTest's summary stays last.
  if [ "$kind" = plain ] && [ "${CI:-}" = true ]; then
    echo "== nvmux: benchmark (short mode)"
    "$root/scripts/bench/perf.sh" --short "$root/$dir" || status=1
  fi
  # The main job once as an unprivileged user (issue 14), on this build: in
  # CI, or when NVMUX_TEST_USER names the user (created and removed again
  # when it does not exist; see scripts/demo-unprivileged.sh).
  if [ "$kind" = plain ] && { [ "${CI:-}" = true ] || [ -n "${NVMUX_TEST_USER:-}" ]; }; then
    echo "== nvmux: the main job without root"
    "$root/scripts/demo-unprivileged.sh" "${NVMUX_TEST_USER:-nvmux-ci}" "$root/$dir" || status=1
  fi
  # The interop suites (peers nobody here wrote, guests under TCG) are slow
  # and test behaviour, not memory errors: they run in the plain build only.
  select=()
  [ "$kind" = plain ] || select=(-LE 'interop|vm')
  echo "== nvmux: $kind tests"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest --test-dir "$root/$dir" -j "$jobs" --output-on-failure --timeout 600 "${select[@]}" || status=1
done
exit "$status"
