// event_loop: an application's own epoll loop around nvmux in event mode.
// Attaches one controller (standalone, or as a secondary of nvmuxd -i N),
// creates an I/O queue pair whose completions raise an interrupt
// (CompletionMode::kEvent), and blocks in epoll on:
//   - the queue pair's event_fd()        (its I/O completions),
//   - the controller's admin_event_fd()  (admin completions and AENs),
//   - a timerfd                          (the admin poll keep-alive needs),
//   - a signalfd                         (SIGINT/SIGTERM end the loop).
// It reads --reads 4 KiB blocks one after another (each completion submits
// the next), then stays idle for --seconds (0: until a signal), which is
// what an application waiting for work looks like: asleep, using no CPU.
// At the end it prints its wakeups by source and the CPU it used.
//
//   nvmux-event-loop -r 'trtype:vfiouser traddr:/tmp/emu' --reads 100 --seconds 5
//   nvmux-event-loop -i 0 --seconds 0   (a secondary of nvmuxd -i 0, idle until SIGTERM)
//
// Output (stdout, one line each, flushed): "ready qid Q", "reads done N",
// "idle", and at the end "wakeups io A admin B timer C idle D" (D: the
// wakeups after "idle", other than the signal) and "cpu us U".
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "nvmux/probe.h"

namespace {

enum Tag : uint64_t { kIo = 1, kAdmin = 2, kTimer = 3, kSignal = 4 };

struct Reader {
  nvmux::IoQpair* qpair = nullptr;
  const nvmux::Namespace* ns = nullptr;
  void* buffer = nullptr;
  uint32_t wanted = 0;
  uint32_t done = 0;
  bool in_flight = false;
  bool failed = false;
};

void SubmitNext(Reader& r);

void OnRead(void* arg, const nvmux::spec::Cqe& cpl) {
  auto* r = static_cast<Reader*>(arg);
  r->in_flight = false;
  if (nvmux::IsError(cpl)) {
    std::fprintf(stderr, "event_loop: read %u failed (status %u/0x%02x)\n", r->done, cpl.sct(), cpl.sc());
    r->failed = true;
    return;
  }
  r->done++;
  SubmitNext(*r);
}

void SubmitNext(Reader& r) {
  if (r.done >= r.wanted || r.failed) return;
  const uint32_t blocks = std::max<uint32_t>(1, 4096 / r.ns->extended_sector_size());
  const uint64_t lba = (uint64_t{r.done} * blocks) % (r.ns->num_sectors() - blocks + 1);
  if (auto st = r.qpair->Read(*r.ns, r.buffer, lba, blocks, OnRead, &r); !st) {
    std::fprintf(stderr, "event_loop: read: %s\n", st.error().message.c_str());
    r.failed = true;
    return;
  }
  r.in_flight = true;
}

long CpuMicros() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000L + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

int64_t NowMs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

bool Watch(int ep, int fd, Tag tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0) return true;
  std::perror("event_loop: epoll_ctl");
  return false;
}

int Run(const std::string& trid_text, std::optional<int> group, uint32_t reads, uint32_t seconds) {
  std::optional<nvmux::TransportId> trid;
  if (!trid_text.empty()) {
    auto parsed = nvmux::TransportId::Parse(trid_text);
    if (!parsed) {
      std::fprintf(stderr, "event_loop: -r '%s': %s\n", trid_text.c_str(), parsed.error().message.c_str());
      return 2;
    }
    trid = *parsed;
  } else if (!group) {
    std::fprintf(stderr, "event_loop: which controller? give -r TRID, or -i GROUP for nvmuxd -i GROUP's first\n");
    return 2;
  }
  // Signals become a file descriptor of the loop (blocked before any thread
  // starts, so DPDK's threads inherit the mask and never take them).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  nvmux::EnvOptions options;
  options.name = "event_loop";
  options.group_id = group;
  auto env = nvmux::Env::Init(options);
  if (!env) {
    std::fprintf(stderr, "event_loop: %s\n", env.error().message.c_str());
    return 1;
  }
  if (!trid) {
    auto published = nvmux::GroupControllers(**env);
    if (!published) {
      std::fprintf(stderr, "event_loop: -i %d: %s\n", *group, published.error().message.c_str());
      return 1;
    }
    trid = published->front();
  }
  auto ctrlr = nvmux::Controller::Connect(**env, *trid);
  if (!ctrlr) {
    std::fprintf(stderr, "event_loop: %s\n", ctrlr.error().message.c_str());
    return 1;
  }
  if ((*ctrlr)->active_namespaces().empty()) {
    std::fprintf(stderr, "event_loop: the controller has no active namespace\n");
    return 1;
  }
  const nvmux::Namespace& ns = *(*ctrlr)->GetNamespace((*ctrlr)->active_namespaces()[0]);
  nvmux::IoQpairOptions qo;
  qo.mode = nvmux::CompletionMode::kEvent;
  auto qpair = (*ctrlr)->AllocIoQpair(qo);
  if (!qpair) {  // ENOTSUP names the mode and the transport when there are no vectors
    std::fprintf(stderr, "event_loop: %s\n", qpair.error().message.c_str());
    return 1;
  }
  auto buffer = (*env)->AllocDma(4096);
  if (!buffer) {
    std::fprintf(stderr, "event_loop: %s\n", buffer.error().message.c_str());
    return 1;
  }

  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  int sfd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (ep < 0 || sfd < 0 || tfd < 0) {
    std::perror("event_loop: epoll/signalfd/timerfd");
    return 1;
  }
  // Keep-alive and timeouts need ProcessAdminCompletions at least every
  // keep_alive_timeout_ms / 2: a quarter, so a late wakeup stays in time.
  const uint32_t admin_ms = std::max<uint32_t>(100, (*ctrlr)->options().keep_alive_timeout_ms / 4);
  itimerspec every{};
  every.it_interval.tv_sec = admin_ms / 1000;
  every.it_interval.tv_nsec = static_cast<long>(admin_ms % 1000) * 1'000'000;
  every.it_value = every.it_interval;
  ::timerfd_settime(tfd, 0, &every, nullptr);
  bool ok = Watch(ep, (*qpair)->event_fd(), kIo) && Watch(ep, sfd, kSignal) && Watch(ep, tfd, kTimer);
  const int admin_fd = (*ctrlr)->admin_event_fd();  // -1: no admin vector; the timer polls then
  if (ok && admin_fd >= 0) ok = Watch(ep, admin_fd, kAdmin);
  if (!ok) return 1;
  std::printf("ready qid %u\n", (*qpair)->id());
  std::fflush(stdout);

  Reader reader{qpair->get(), &ns, buffer->data(), reads};
  SubmitNext(reader);
  uint64_t woken[5] = {};
  uint64_t idle_wakeups = 0;
  bool idle = false;
  int64_t end_ms = -1;
  int rc = 0;
  for (bool running = true; running;) {
    // Race-free arming: drain, re-check; a completion from here on leaves
    // event_fd() readable. false: something is waiting, run it first.
    (void)(*ctrlr)->ArmAdminEvent();
    (void)(*ctrlr)->ProcessAdminCompletions();
    auto ran = (*qpair)->ProcessCompletions();
    if (!ran) {
      std::fprintf(stderr, "event_loop: %s\n", ran.error().message.c_str());
      return 1;
    }
    if (reader.failed) return 1;
    if (!idle && !reader.in_flight) {
      std::printf("reads done %u\nidle\n", reader.done);
      std::fflush(stdout);
      idle = true;
      if (seconds > 0) end_ms = NowMs() + int64_t{seconds} * 1000;
    }
    if (!(*qpair)->ArmEvent()) continue;
    int timeout = -1;
    if (end_ms >= 0) {
      const int64_t left = end_ms - NowMs();
      if (left <= 0) break;
      timeout = static_cast<int>(left);
    }
    epoll_event events[4];
    const int n = ::epoll_wait(ep, events, 4, timeout);
    if (n < 0 && errno != EINTR) {
      std::perror("event_loop: epoll_wait");
      rc = 1;
      break;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      woken[tag]++;
      if (idle && tag != kSignal) idle_wakeups++;
      if (tag == kSignal) running = false;
      if (tag == kTimer) {
        uint64_t expirations = 0;
        (void)!::read(tfd, &expirations, sizeof expirations);
      }
    }
  }
  std::printf("wakeups io %lu admin %lu timer %lu idle %lu\ncpu us %ld\n", static_cast<unsigned long>(woken[kIo]),
              static_cast<unsigned long>(woken[kAdmin]), static_cast<unsigned long>(woken[kTimer]),
              static_cast<unsigned long>(idle_wakeups), CpuMicros());
  std::fflush(stdout);
  ::close(tfd);
  ::close(sfd);
  ::close(ep);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux event loop: event-mode I/O and idling in the application's own epoll loop"};
  app.footer(
      "Examples:\n  nvmux-event-loop -r 'trtype:vfiouser traddr:/tmp/nvmux-emu' --reads 100 --seconds 5\n"
      "  nvmux-event-loop -i 0 --seconds 0   (a secondary of nvmuxd -i 0, idle until SIGINT/SIGTERM)");
  std::string trid;
  std::optional<int> group;
  uint32_t reads = 0;
  uint32_t seconds = 0;
  app.add_option("-r,--transport-id", trid,
                 "controller to use (SPDK-style transport id); with -i and no -r: the group's first controller");
  app.add_option("-i,--shm-id", group, "shared-memory group id (join nvmuxd -i N as a secondary)");
  app.add_option("--reads", reads, "4 KiB reads to do first, one after another (default 0)")
      ->check(CLI::Range(0u, 1'000'000u));
  app.add_option("--seconds", seconds, "how long to stay idle after the reads; 0: until SIGINT/SIGTERM (default)")
      ->check(CLI::Range(0u, 86'400u));
  CLI11_PARSE(app, argc, argv);
  return Run(trid, group, reads, seconds);
}
