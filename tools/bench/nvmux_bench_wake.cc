// nvmux-bench-wake: what idling costs the first command after it. The
// emulator spins for a while after its last work, then sleeps on the
// doorbell ioeventfd and is woken by the driver's kick; a sleeping thread
// costs the machine's own wake-up time, which this measures beside it in the
// same run as the reference: a thread of this process, pinned to the
// device's CPU, blocked in poll() on an eventfd, woken by a write from the
// driver's CPU after the same idle time.
//
//   nvmux-bench-wake -r TRID [--idle-ms 1,5,50,200] [--rounds N] [-c CPU] [--device-cpu CPU]
//
// For each idle time, N rounds alternate the two: one QD 1 4 KiB read, the
// idle time, then one read timed from submission to its completion seen;
// one eventfd wake, the idle time, then one wake timed from the write to the
// woken thread's timestamp. The
// busy figure is 200 back-to-back QD 1 reads. Prints medians:
//   after idle: the read after the idle time;
//   added:      after idle minus busy (what idling cost the command);
//   wake ref:   the machine's eventfd wake-up after the same idle time;
//   beyond ref: added minus wake ref (what the device adds to the wake-up).
// Run the device pinned to --device-cpu (scripts/bench/wake.sh does).
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "shm/base/clock.h"
#include "shm/base/unique_fd.h"

namespace nvmux {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

bool PinThread(pthread_t thread, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(thread, sizeof(set), &set) == 0;
}

// The reference: a thread on the device's CPU sleeping in poll() on an
// eventfd; Ping() writes it and returns the microseconds until that thread
// ran again.
class WakeReference {
 public:
  static Result<std::unique_ptr<WakeReference>> Start(int cpu) {
    auto ref = std::unique_ptr<WakeReference>(new WakeReference());
    ref->fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ref->fd_.valid()) return ErrnoError("eventfd");
    ref->thread_ = std::thread([r = ref.get()] { r->Loop(); });
    if (!PinThread(ref->thread_.native_handle(), cpu)) return Fail(EINVAL, "cannot pin to CPU " + std::to_string(cpu));
    return ref;
  }
  ~WakeReference() {
    stop_.store(true);
    Signal();
    if (thread_.joinable()) thread_.join();
  }
  double Ping() {
    woken_at_.store(0);
    const int64_t start = MonotonicNanos();
    Signal();
    int64_t woke;
    while ((woke = woken_at_.load()) == 0) {
    }
    return static_cast<double>(woke - start) / 1000.0;
  }

 private:
  WakeReference() = default;
  void Signal() {
    uint64_t one = 1;
    (void)!::write(fd_.get(), &one, sizeof(one));
  }
  void Loop() {
    while (!stop_.load()) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, -1) <= 0) continue;
      woken_at_.store(MonotonicNanos());
      uint64_t value;
      (void)!::read(fd_.get(), &value, sizeof(value));
    }
  }
  UniqueFd fd_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> woken_at_{0};
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

// One QD 1 read, in microseconds from submission to its completion seen.
Result<double> TimedRead(IoQpair& qpair, Namespace& ns, void* buf, uint64_t lba, uint32_t blocks) {
  Done d;
  const int64_t start = MonotonicNanos();
  if (Status st = qpair.Read(ns, buf, lba, blocks, OnDone, &d); !st) return st.error();
  while (!d.done) {
    auto n = qpair.ProcessCompletions();
    if (!n) return n.error();
    if (MonotonicNanos() - start > 5'000'000'000) return Fail(ETIMEDOUT, "a read did not complete in 5 s");
  }
  if (IsError(d.cpl)) return Fail(EIO, "a read failed with status " + std::to_string(d.cpl.sct()) + "/" +
                                           std::to_string(d.cpl.sc()));
  return static_cast<double>(MonotonicNanos() - start) / 1000.0;
}

int Run(const std::string& trid_text, const std::vector<int>& idle_ms, int rounds, int cpu, int device_cpu) {
  auto fail = [](const std::string& what) {
    std::fprintf(stderr, "nvmux-bench-wake: %s\n", what.c_str());
    return 1;
  };
  auto trid = TransportId::Parse(trid_text);
  if (!trid) return fail("-r '" + trid_text + "': " + trid.error().message);
  EnvOptions eo;
  eo.name = "bench_wake";
  eo.core_mask = std::to_string(cpu);
  auto env = Env::Init(eo);
  if (!env) return fail(env.error().message);
  auto ctrlr = Controller::Connect(**env, *trid);
  if (!ctrlr) return fail(ctrlr.error().message);
  Namespace* ns = (*ctrlr)->GetNamespace((*ctrlr)->active_namespaces()[0]);
  auto qpair = (*ctrlr)->AllocIoQpair();
  auto buffer = (*env)->AllocDma(4096);
  if (!qpair) return fail("queue pair: " + qpair.error().message);
  if (!buffer) return fail("DMA buffer: " + buffer.error().message);
  auto ref = WakeReference::Start(device_cpu);
  if (!ref) return fail(ref.error().message);
  const uint32_t blocks = 4096 / ns->sector_size();
  const uint64_t slots = std::min<uint64_t>(ns->num_sectors() / blocks, 4096);

  std::vector<double> busy;
  for (int i = 0; i < 250; ++i) {
    auto us = TimedRead(**qpair, *ns, buffer->data(), uint64_t(i) % slots * blocks, blocks);
    if (!us) return fail(us.error().message);
    if (i >= 50) busy.push_back(*us);
  }
  const double busy_us = Median(busy);
  std::printf("nvmux-bench-wake: %s, driver on CPU %d, reference thread on CPU %d, %d rounds per idle time\n",
              trid->ToString().c_str(), cpu, device_cpu, rounds);
  std::printf("busy QD 1 4 KiB read: median %.1f us (200 back to back)\n", busy_us);
  std::printf("%8s %14s %10s %12s %12s\n", "idle ms", "after idle us", "added us", "wake ref us", "beyond ref us");
  for (int ms : idle_ms) {
    std::vector<double> after, wake;
    for (int r = 0; r < rounds; ++r) {
      // Each timed one follows an untimed one by exactly the idle time.
      const uint64_t lba = uint64_t(r) % slots * blocks;
      auto warm = TimedRead(**qpair, *ns, buffer->data(), lba, blocks);
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      auto us = TimedRead(**qpair, *ns, buffer->data(), lba, blocks);
      if (!warm || !us) return fail((warm ? us : warm).error().message);
      after.push_back(*us);
      // Keep Alive (and AENs) ride on the admin poll, as in any nvmux
      // application; done after the timed read, never between it and its idle.
      (void)(*ctrlr)->ProcessAdminCompletions();
      (void)(*ref)->Ping();
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      wake.push_back((*ref)->Ping());
    }
    const double after_us = Median(after), wake_us = Median(wake);
    std::printf("%8d %14.1f %10.1f %12.1f %12.1f\n", ms, after_us, after_us - busy_us, wake_us,
                after_us - busy_us - wake_us);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"nvmux-bench-wake: the first command after idling, beside the machine's own thread wake-up"};
  app.footer("Example:\n  taskset -c 1 nvmux-emu --socket /tmp/emu &\n"
             "  nvmux-bench-wake -r 'trtype:vfiouser traddr:/tmp/emu' -c 0 --device-cpu 1");
  std::string trid;
  std::vector<int> idle_ms{1, 5, 50, 200};
  int rounds = 21, cpu = 0, device_cpu = 1;
  app.add_option("-r,--transport-id", trid, "controller (standalone)")->required();
  app.add_option("--idle-ms", idle_ms, "idle times before the command, in ms")
      ->delimiter(',')
      ->check(CLI::Range(0, 10000));
  app.add_option("--rounds", rounds, "commands (and reference wake-ups) per idle time")->check(CLI::Range(1, 10000));
  app.add_option("-c,--cpu", cpu, "CPU of the driver")->check(CLI::Range(0, 1023));
  app.add_option("--device-cpu", device_cpu, "CPU the device runs on (the reference thread goes there)")
      ->check(CLI::Range(0, 1023));
  CLI11_PARSE(app, argc, argv);
  return nvmux::Run(trid, idle_ms, rounds, cpu, device_cpu);
}
