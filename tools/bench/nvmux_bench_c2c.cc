// nvmux-bench-c2c: the machine's core-to-core handoff time, the floor under
// every polled I/O. A QD 1 I/O between a host on one CPU and a device
// polling on another is a chain of cache-line handoffs (the SQ tail, the
// entry, the completion), each costing what this measures: one line
// written on CPU A and seen by a thread spinning on CPU B, then back.
//
//   nvmux-bench-c2c [-a CPU] [-b CPU] [--ms MILLISECONDS]
//
// Prints one line, "c2c A<->B: N ns per one-way handoff (median of bursts)".
// Our 2-vCPU test machine gives two figures, depending on where the
// hypervisor places the vCPUs: about 30 ns (one shared cache) and about
// 170 ns (two dies). Benchmarks run it around their measurements
// (scripts/bench/spdk-peer.sh) to say which state each figure comes from.
#include <pthread.h>
#include <sched.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "shm/base/clock.h"

namespace nvmux {
namespace {

bool Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

constexpr uint32_t kHandoffsPerBurst = 2000;

// The line both threads write; alone on its line.
struct alignas(64) Line {
  std::atomic<uint32_t> value{0};
};

int Run(int cpu_a, int cpu_b, int ms) {
  Line line;
  std::atomic<bool> stop{false};
  std::atomic<bool> pinned_b{true};
  // B answers every odd value with the next even one until told to stop.
  std::thread b([&] {
    pinned_b = Pin(cpu_b);
    uint32_t seen = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      uint32_t v = line.value.load(std::memory_order_acquire);
      if (v != seen && (v & 1u) != 0) {
        seen = v + 1;
        line.value.store(seen, std::memory_order_release);
      }
    }
  });
  if (!Pin(cpu_a)) {
    stop = true;
    b.join();
    std::fprintf(stderr, "nvmux-bench-c2c: cannot run on CPU %d (allowed: the CPUs of this machine)\n", cpu_a);
    return 2;
  }
  std::vector<double> bursts;
  uint32_t v = 0;
  const int64_t end = MonotonicNanos() + int64_t{ms} * 1'000'000;
  while (MonotonicNanos() < end || bursts.size() < 3) {
    const int64_t t0 = MonotonicNanos();
    for (uint32_t i = 0; i < kHandoffsPerBurst; ++i) {
      line.value.store(++v, std::memory_order_release);
      ++v;
      while (line.value.load(std::memory_order_acquire) != v) {
      }
    }
    bursts.push_back(static_cast<double>(MonotonicNanos() - t0) / (2.0 * kHandoffsPerBurst));
  }
  stop = true;
  b.join();
  if (!pinned_b) {
    std::fprintf(stderr, "nvmux-bench-c2c: cannot run on CPU %d (allowed: the CPUs of this machine)\n", cpu_b);
    return 2;
  }
  std::sort(bursts.begin(), bursts.end());
  std::printf("c2c %d<->%d: %.1f ns per one-way handoff (median of %zu bursts; min %.1f, max %.1f)\n", cpu_a, cpu_b,
              bursts[bursts.size() / 2], bursts.size(), bursts.front(), bursts.back());
  return 0;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"nvmux-bench-c2c: one cache line handed back and forth between two CPUs"};
  int a = 0, b = 1, ms = 20;
  app.add_option("-a", a, "the first CPU")->check(CLI::Range(0, 1023));
  app.add_option("-b", b, "the second CPU")->check(CLI::Range(0, 1023));
  app.add_option("--ms", ms, "how long to measure, in milliseconds")->check(CLI::Range(1, 60'000));
  app.footer("Example:\n  nvmux-bench-c2c -a 0 -b 1 --ms 20");
  CLI11_PARSE(app, argc, argv);
  if (a == b) {
    std::fprintf(stderr, "nvmux-bench-c2c: -a and -b are both CPU %d (allowed: two different CPUs)\n", a);
    return 2;
  }
  return nvmux::Run(a, b, ms);
}
