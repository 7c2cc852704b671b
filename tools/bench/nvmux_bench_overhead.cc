// nvmux-bench-overhead: the driver's own cost per I/O, as SPDK's `overhead`
// tool measures it — QD 1 4 KiB reads, the submission call and the
// completion-processing call that found the completion timed with the TSC,
// each into a histogram. The device's time is not in either figure: only
// the CPU time nvmux spends in IoQpair::Read and IoQpair::ProcessCompletions.
//
//   nvmux-bench-overhead -r TRID [-t SECONDS] [-c CPU] [--histogram] [--no-shadow-doorbells]
//
// Prints the average, min, max and percentiles of submit and complete in ns
// (TSC ticks converted with a frequency calibrated against CLOCK_MONOTONIC),
// plus, for reference in the same run, the cost of one empty
// ProcessCompletions call (a poll that finds nothing) and of reading the TSC.
#include <x86intrin.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "shm/base/clock.h"
#include "shm/core_set.h"

namespace nvmux {
namespace {

double TscPerNs() {
  int64_t t0 = MonotonicNanos();
  uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int64_t t1 = MonotonicNanos();
  uint64_t c1 = __rdtsc();
  return static_cast<double>(c1 - c0) / static_cast<double>(t1 - t0);
}

struct Stats {
  std::vector<uint64_t> ticks;
  void Print(const char* name, double tsc_per_ns, bool histogram) {
    std::sort(ticks.begin(), ticks.end());
    double sum = 0;
    for (uint64_t t : ticks) sum += static_cast<double>(t);
    auto ns = [&](double t) { return t / tsc_per_ns; };
    auto pct = [&](double p) { return ns(static_cast<double>(ticks[static_cast<size_t>(p * static_cast<double>(ticks.size() - 1))])); };
    std::printf("%-9s avg %8.1f ns  min %8.1f  p50 %8.1f  p90 %8.1f  p99 %8.1f  p99.9 %8.1f  max %10.1f  (%zu samples)\n", name,
                ns(sum / static_cast<double>(ticks.size())), ns(static_cast<double>(ticks.front())), pct(0.5), pct(0.9),
                pct(0.99), pct(0.999), ns(static_cast<double>(ticks.back())), ticks.size());
    if (!histogram) return;
    // Log2 buckets of nanoseconds, like the overhead tool's histogram.
    std::vector<size_t> buckets(40, 0);
    for (uint64_t t : ticks) {
      auto n = static_cast<uint64_t>(ns(static_cast<double>(t)));
      size_t b = 0;
      while ((uint64_t{2} << b) <= n && b + 1 < buckets.size()) ++b;
      buckets[b]++;
    }
    for (size_t b = 0; b < buckets.size(); ++b)
      if (buckets[b] > 0)
        std::printf("    %8llu - %8llu ns: %10zu\n", b == 0 ? 0ull : 1ull << b, (2ull << b) - 1, buckets[b]);
  }
};

struct Done {
  bool done = false;
  spec::Cqe cpl{};
};

void OnDone(void* arg, const spec::Cqe& cpl) {
  auto* d = static_cast<Done*>(arg);
  d->done = true;
  d->cpl = cpl;
}

int Run(const std::string& trid_text, double seconds, int cpu, bool histogram, bool shadow_doorbells) {
  auto trid = TransportId::Parse(trid_text);
  if (!trid) {
    std::fprintf(stderr, "nvmux-bench-overhead: -r '%s': %s\n", trid_text.c_str(), trid.error().message.c_str());
    return 2;
  }
  EnvOptions eo;
  eo.name = "bench_overhead";
  eo.core_mask = std::to_string(cpu);
  auto env = Env::Init(eo);
  if (!env) {
    std::fprintf(stderr, "nvmux-bench-overhead: %s\n", env.error().message.c_str());
    return 1;
  }
  ControllerOptions copts;
  copts.shadow_doorbells = shadow_doorbells;
  auto ctrlr = Controller::Connect(**env, *trid, copts);
  if (!ctrlr) {
    std::fprintf(stderr, "nvmux-bench-overhead: %s\n", ctrlr.error().message.c_str());
    return 1;
  }
  Namespace* ns = (*ctrlr)->GetNamespace((*ctrlr)->active_namespaces()[0]);
  auto qpair = (*ctrlr)->AllocIoQpair();
  auto buffer = (*env)->AllocDma(4096);
  if (!qpair || !buffer) {
    std::fprintf(stderr, "nvmux-bench-overhead: cannot allocate a queue pair or buffer\n");
    return 1;
  }
  uint32_t blocks = 4096 / ns->sector_size();
  uint64_t slots = ns->num_sectors() / blocks;
  double tsc_per_ns = TscPerNs();
  Stats submit, complete, empty_poll, tsc;
  uint64_t lba_seed = 88172645463325252ull;
  int64_t end = MonotonicNanos() + static_cast<int64_t>(seconds * 1e9);
  int64_t warm = MonotonicNanos() + 200'000'000;
  uint64_t ios = 0;
  while (MonotonicNanos() < end) {
    // Keep Alive rides on the admin poll (a device enforcing KATO fails a
    // controller nobody keeps alive); between I/Os, outside the timed calls.
    if ((++ios & 4095) == 0) (void)(*ctrlr)->ProcessAdminCompletions();
    lba_seed ^= lba_seed << 13;
    lba_seed ^= lba_seed >> 7;
    lba_seed ^= lba_seed << 17;
    Done d;
    uint64_t t0 = __rdtsc();
    Status st = (*qpair)->Read(*ns, buffer->data(), (lba_seed % slots) * blocks, blocks, OnDone, &d);
    uint64_t t1 = __rdtsc();
    if (!st) {
      std::fprintf(stderr, "nvmux-bench-overhead: %s\n", st.error().message.c_str());
      return 1;
    }
    bool measuring = MonotonicNanos() > warm;
    if (measuring) submit.ticks.push_back(t1 - t0);
    while (!d.done) {
      uint64_t p0 = __rdtsc();
      auto n = (*qpair)->ProcessCompletions();
      uint64_t p1 = __rdtsc();
      if (!n) {
        std::fprintf(stderr, "nvmux-bench-overhead: %s\n", n.error().message.c_str());
        return 1;
      }
      if (!measuring) continue;
      if (*n > 0)
        complete.ticks.push_back(p1 - p0);
      else if (empty_poll.ticks.size() < 1'000'000)
        empty_poll.ticks.push_back(p1 - p0);
    }
    if (IsError(d.cpl)) {
      std::fprintf(stderr, "nvmux-bench-overhead: read failed: status %u/0x%02x\n", d.cpl.sct(), d.cpl.sc());
      return 1;
    }
    if (measuring && tsc.ticks.size() < 100'000) {
      uint64_t a = __rdtsc();
      uint64_t b = __rdtsc();
      tsc.ticks.push_back(b - a);
    }
  }
  if (submit.ticks.empty()) {
    std::fprintf(stderr, "nvmux-bench-overhead: no samples (run longer than 0.2 s)\n");
    return 1;
  }
  std::printf("nvmux-bench-overhead: %s, QD 1, 4 KiB reads, %.1f s, TSC %.3f GHz, CPU %d, shadow doorbells %s\n",
              trid->ToString().c_str(), seconds, tsc_per_ns, cpu, (*qpair)->statistics().shadow_doorbell_updates > 0 ? "on" : "off");
  submit.Print("submit", tsc_per_ns, histogram);
  complete.Print("complete", tsc_per_ns, histogram);
  std::printf("reference (same run):\n");
  empty_poll.Print("idle poll", tsc_per_ns, false);
  tsc.Print("rdtsc", tsc_per_ns, false);
  return 0;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"nvmux-bench-overhead: the driver's submit and complete cost per I/O (SPDK's overhead tool)"};
  app.footer("Example:\n  taskset -c 1 nvmux-emu --socket /tmp/emu --backing null &\n"
             "  nvmux-bench-overhead -r 'trtype:vfiouser traddr:/tmp/emu' -t 5 -c 0 --histogram");
  std::string trid;
  double seconds = 5;
  int cpu = 0;
  bool histogram = false;
  bool no_shadow_doorbells = false;
  app.add_option("-r,--transport-id", trid, "controller (standalone)")->required();
  app.add_option("-t,--time", seconds, "seconds to run")->check(CLI::Range(0.3, 3600.0));
  app.add_option("-c,--cpu", cpu, "CPU to run on")->check(CLI::Range(0, 1023));
  app.add_flag("--histogram", histogram, "print log2 histograms of submit and complete");
  app.add_flag("--no-shadow-doorbells", no_shadow_doorbells,
               "write every doorbell, never configuring shadow doorbells (SPDK's choice on vfio-user)");
  CLI11_PARSE(app, argc, argv);
  return nvmux::Run(trid, seconds, cpu, histogram, !no_shadow_doorbells);
}
