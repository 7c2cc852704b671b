// nvmux_event_child: a secondary whose queue pair waits for completions by
// interrupt (IoQpairOptions::mode), for the multi-process event tests.
//
//   nvmux_event_child -i G -r TRID --mode event|hybrid|poll --lba L --ios N [--hang]
//     joins group G, allocates a queue pair in that mode, prints
//     "ready <qid> <event fd>", then writes and reads back N I/Os of 8 blocks
//     from LBA L, one at a time, waiting only with WaitCompletions, and
//     prints "io ok <blocks> <wakeups>" (exit 0) or the error (exit 1).
//     A refused allocation prints "alloc error <errno> <message>" (exit 1).
//     --spin-us N sets hybrid mode's spin budget (a test that needs every
//     completion found while spinning, on a loaded machine, gives seconds).
//     With --wait-go it waits for a line on stdin between "ready" and its
//     I/O (so that processes the test starts hold their queues at once).
//     With --hang it then submits one read (the test makes the device drop
//     it), prints "blocked", and waits for it with WaitCompletions(-1):
//     blocked on the eventfd until it is killed.
//     With --admin-wait it prints "connected", waits for a line on stdin,
//     then only sends one Get Features (Number of Queues;
//     the test makes the device delay it) and prints
//     "admin ok <cpu us> <wall us> <blocks> <wakeups> <missed>": the CPU time this
//     process used (getrusage) while waiting, the wait's wall time, and the
//     controller's admin wait statistics; then exits. A line "go N"
//     instead sends N of them one after another, prints the same line for
//     the batch and "admin fd <admin_event_fd()>", and waits for the next
//     line (exit 0 at end of input).
//     With --first-wait it first submits one read (the test makes the
//     device delay it), prints "blocked", waits for it (up to 60 s) and
//     prints "woken <wakeups>", then waits for a line on stdin before its
//     N I/Os: the test restarts nvmuxd meanwhile (a takeover).
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "nvmux/controller.h"
#include "nvmux/env.h"

namespace nvmux {
namespace {

struct Done {
  bool done = false;
  bool ok = false;
};
void OnDone(void* arg, const spec::Cqe& cpl) {
  auto* d = static_cast<Done*>(arg);
  d->done = true;
  d->ok = !IsError(cpl);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "event_child: %s\n", what.c_str());
  return 1;
}

struct ChildFlags {
  bool hang = false;
  bool first_wait = false;
  bool admin_wait = false;
  bool wait_go = false;
  uint32_t spin_us = 0;  // hybrid spin budget; 0: the default
};

int Run(int group, const std::string& trid_text, const std::string& mode, uint64_t lba, uint32_t ios, ChildFlags f) {
  EnvOptions o;
  o.name = "event_child";
  o.group_id = group;
  auto env = Env::Init(o);
  if (!env) return Fail(env.error().message);
  auto trid = TransportId::Parse(trid_text);
  if (!trid) return Fail(trid.error().message);
  auto ctrlr = Controller::Connect(**env, *trid);
  if (!ctrlr) return Fail(ctrlr.error().message);
  if (f.admin_wait) {
    // Connecting sent admin commands of its own: the test sets the delay
    // up once this one is the next.
    std::printf("connected\n");
    std::fflush(stdout);
    char go[32];
    while (std::fgets(go, sizeof go, stdin) != nullptr) {
      unsigned count = 1;
      const bool batch = std::sscanf(go, "go %u", &count) == 1;
      const AdminStatistics before = (*ctrlr)->admin_statistics();
      auto cpu_us = [] {
        rusage u{};
        ::getrusage(RUSAGE_SELF, &u);
        return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000LL + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
      };
      const long long cpu0 = cpu_us();
      const auto wall0 = std::chrono::steady_clock::now();
      for (unsigned i = 0; i < count; ++i) {
        auto queues = (*ctrlr)->GetFeature(0x07);
        if (!queues) return Fail(queues.error().message);
      }
      const long long wall =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - wall0).count();
      const long long cpu = cpu_us() - cpu0;
      const AdminStatistics& st = (*ctrlr)->admin_statistics();
      std::printf("admin ok %lld %lld %llu %llu %llu\n", cpu, wall,
                  static_cast<unsigned long long>(st.blocks - before.blocks),
                  static_cast<unsigned long long>(st.wakeups - before.wakeups),
                  static_cast<unsigned long long>(st.missed_wakeups - before.missed_wakeups));
      std::fflush(stdout);
      // What it blocks on (an epoll fd in a group), for the test to find
      // its wakeup eventfd.
      std::printf("admin fd %d\n", (*ctrlr)->admin_event_fd());
      std::fflush(stdout);
      if (!batch) return 0;
    }
    return 0;
  }
  IoQpairOptions qo;
  if (mode == "event") qo.mode = CompletionMode::kEvent;
  else if (mode == "hybrid") qo.mode = CompletionMode::kHybrid;
  else if (mode != "poll") return Fail("--mode " + mode + ": must be poll, event or hybrid");
  if (f.spin_us != 0) qo.hybrid_spin_us = f.spin_us;
  auto qpair = (*ctrlr)->AllocIoQpair(qo);
  if (!qpair) {
    // On stdout too, for the test to check the refusal.
    std::printf("alloc error %d %s\n", qpair.error().code, qpair.error().message.c_str());
    std::fflush(stdout);
    return Fail(qpair.error().ToString());
  }
  IoQpair& q = **qpair;
  Namespace* ns = (*ctrlr)->GetNamespace(1);
  auto buf = (*env)->AllocDma(8 * ns->sector_size());
  if (!buf) return Fail(buf.error().message);
  const size_t bytes = 8 * ns->sector_size();
  std::printf("ready %u %d\n", q.id(), q.event_fd());
  std::fflush(stdout);
  if (f.wait_go) {
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return Fail("stdin closed before 'go'");
  }
  auto wait = [&](Done& d) -> bool {
    while (!d.done) {
      auto n = q.WaitCompletions(10'000);
      if (!n) return Fail(n.error().message), false;
      if (*n == 0 && !d.done) return Fail("no completion within 10 s"), false;
    }
    return d.ok || (Fail("I/O failed"), false);
  };
  if (f.first_wait) {
    Done slow;
    if (Status st = q.Read(*ns, buf->data(), lba, 8, OnDone, &slow); !st) return Fail(st.error().message);
    std::printf("blocked\n");
    std::fflush(stdout);
    for (int i = 0; i < 6 && !slow.done; ++i) {
      auto n = q.WaitCompletions(10'000);
      if (!n) return Fail(n.error().message);
    }
    if (!slow.done || !slow.ok) return Fail("the delayed read did not complete within 60 s, or failed");
    std::printf("woken %llu\n", static_cast<unsigned long long>(q.statistics().wakeups));
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return Fail("stdin closed before 'go'");
  }
  auto* words = static_cast<uint32_t*>(buf->data());
  for (uint32_t i = 0; i < ios; ++i) {
    const uint64_t at = lba + uint64_t{i} * 8;
    for (size_t w = 0; w < bytes / 4; ++w) words[w] = static_cast<uint32_t>(at * 131 + w + getpid());
    Done wd;
    if (Status st = q.Write(*ns, buf->data(), at, 8, OnDone, &wd); !st) return Fail(st.error().message);
    if (!wait(wd)) return 1;
    std::memset(buf->data(), 0, bytes);
    Done rd;
    if (Status st = q.Read(*ns, buf->data(), at, 8, OnDone, &rd); !st) return Fail(st.error().message);
    if (!wait(rd)) return 1;
    for (size_t w = 0; w < bytes / 4; ++w)
      if (words[w] != static_cast<uint32_t>(at * 131 + w + getpid())) return Fail("data mismatch at LBA " + std::to_string(at));
  }
  std::printf("io ok %llu %llu\n", static_cast<unsigned long long>(q.statistics().blocks),
              static_cast<unsigned long long>(q.statistics().wakeups));
  std::fflush(stdout);
  if (!f.hang) return 0;
  Done never;
  if (Status st = q.Read(*ns, buf->data(), lba, 8, OnDone, &never); !st) return Fail(st.error().message);
  std::printf("blocked\n");
  std::fflush(stdout);
  for (;;) {
    auto n = q.WaitCompletions(-1);
    if (!n) return Fail(n.error().message);
    if (never.done) return Fail("the dropped read completed");
  }
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"event-mode test child"};
  int group = 0;
  std::string trid, mode = "event";
  uint64_t lba = 0;
  uint32_t ios = 8;
  nvmux::ChildFlags f;
  app.add_option("-i", group)->required();
  app.add_option("-r", trid)->required();
  app.add_option("--mode", mode);
  app.add_option("--lba", lba);
  app.add_option("--ios", ios);
  app.add_flag("--hang", f.hang);
  app.add_flag("--first-wait", f.first_wait);
  app.add_flag("--admin-wait", f.admin_wait);
  app.add_flag("--wait-go", f.wait_go);
  app.add_option("--spin-us", f.spin_us);
  CLI11_PARSE(app, argc, argv);
  return nvmux::Run(group, trid, mode, lba, ios, f);
}
