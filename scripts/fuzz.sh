#!/usr/bin/env bash
# Fuzzes nvmux-emu and the NVMe/TCP PDU reader for a bounded time with
# libFuzzer (clang, ASan+UBSan):
#   fuzz_vfiouser  random vfio-user messages into the real server socket
#   fuzz_sqe       random submission-queue entries into an enabled controller
#   fuzz_tcp_pdu   random controller-to-host NVMe/TCP streams into PduReader
#
#   scripts/fuzz.sh [SECONDS]     total time, split between the targets (default 60)
#   NVMUX_FUZZ_TARGETS='fuzz_tcp_pdu' scripts/fuzz.sh 10    only some targets
#
# Configures and builds build-fuzz/ (NVMUX_FUZZ_BUILD overrides) with
# clang/clang++, seeds each target from tools/emu/fuzz/corpus/<name>
# (committed; regenerate with tools/emu/fuzz/make_corpus.py), or
# libclient/tcp/fuzz/corpus/tcp_pdu for fuzz_tcp_pdu, into a working
# corpus kept in the build directory, and runs each with -max_total_time and
# -timeout=10 (a hang is a failure). Prints one line of final stats per
# target and, last, "fuzz: N passed, M failed". Exit status: non-zero on any
# crash, leak, sanitizer report, timeout or build failure; a failing input is
# kept as build-fuzz/artifacts/<target>-crash-* (or -timeout-, -leak-) and
# its log as build-fuzz/logs/<target>.log. Leaves no processes or sockets.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
total=${1:-60}
case "$total" in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$total'" >&2; exit 2 ;;
esac
build=${NVMUX_FUZZ_BUILD:-$root/build-fuzz}
# NVMUX_FUZZ_TARGETS (space separated) runs a subset.
read -r -a targets <<<"${NVMUX_FUZZ_TARGETS:-fuzz_vfiouser fuzz_sqe fuzz_tcp_pdu}"
for t in "${targets[@]}"; do
  case "$t" in fuzz_vfiouser|fuzz_sqe|fuzz_tcp_pdu) ;;
    *) echo "fuzz.sh: NVMUX_FUZZ_TARGETS: unknown target '$t' (fuzz_vfiouser, fuzz_sqe, fuzz_tcp_pdu)" >&2; exit 2 ;;
  esac
done
per=$(( total / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1

for tool in clang clang++; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 2; }
done

mkdir -p "$build/logs" "$build/artifacts"
if ! cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVMUX_FUZZ=ON -DNVMUX_SANITIZE=address,undefined \
    >"$build/logs/configure.log" 2>&1; then
  tail -n 30 "$build/logs/configure.log" >&2
  echo "fuzz: 0 passed, ${#targets[@]} failed (configure)"
  exit 1
fi
if ! cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$build/logs/build.log" 2>&1; then
  grep -E "error|undefined reference" "$build/logs/build.log" | head -n 30 >&2 || true
  echo "fuzz: 0 passed, ${#targets[@]} failed (build)"
  exit 1
fi

# The vfio-user target's emulator lives under this directory; removed on exit
# whatever happens to the fuzzer.
run_dir=$(mktemp -d /tmp/nvmux-fuzz.XXXXXX)
trap 'rm -rf "$run_dir"' EXIT

passed=0
failed=0
for t in "${targets[@]}"; do
  seeds="$root/tools/emu/fuzz/corpus/${t#fuzz_}"
  bin="$build/tools/emu/fuzz/$t"
  if [ "$t" = fuzz_tcp_pdu ]; then
    seeds="$root/libclient/tcp/fuzz/corpus/tcp_pdu"
    bin="$build/libclient/tcp/fuzz/$t"
  fi
  work="$build/corpus/$t"
  mkdir -p "$work"
  log="$build/logs/$t.log"
  rc=0
  # New inputs go to the first directory (the working corpus); the seeds
  # are read only. -timeout: one input running 10 s is a hang.
  NVMUX_FUZZ_DIR="$run_dir" \
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    timeout --kill-after=30 $(( per + 60 )) \
    "$bin" -max_total_time="$per" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t-" "$work" "$seeds" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([^ ]+) .*/cov \1, features \2, corpus \3/p' <<<"$done_line")
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    passed=$((passed + 1))
    echo "$t: passed: ${runs:-?} runs in ${per} s (${speed:-?} exec/s), ${cov:-no stats}, peak RSS ${rss:-?} MB"
  else
    failed=$((failed + 1))
    echo "$t: FAILED (exit $rc) after ${runs:-?} runs; log $log"
    grep -E "ERROR: |SUMMARY: |HANG|Test unit written|^    #[0-9]+ " "$log" | head -n 30 || tail -n 30 "$log"
    echo "$t: reproduce with: NVMUX_FUZZ_DIR=/tmp $bin $build/artifacts/$t-<kind>-<sha1>"
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
