// nvmux-bench-attach: how long a primary takes to create a group and a
// secondary to join one, as medians over N runs of real processes, beside a
// reference measured in the same run: the cost of starting a process of the
// same binary that does nothing (so the ratio shows what joining adds).
//
//   nvmux-bench-attach [-n RUNS] [--group-base ID] [--json] [-r TRID]
//
// With -r (a running nvmux-emu), the primary also attaches the controller
// (Env + Controller::Connect, as nvmuxd does) and the secondary's attach is
// what an application pays: Env::Init, Controller::Connect (the published
// controller, its fds over DPDK IPC) and one I/O queue pair created through
// the shared admin queue.
//
// Needs hugepages (scripts/bench/attach.sh reserves and releases them).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "nvmux/controller.h"
#include "nvmux/env.h"
#include "shm/base/clock.h"
#include "shm/group.h"

using namespace nvmux;

namespace {

// A child of this binary in a role, with a pipe to its stdin (kept open to keep
// it alive) and one from its stdout.
struct Child {
  pid_t pid = -1;
  int in = -1;
  FILE* out = nullptr;
};

std::string g_trid;  // -r: attach this controller too

Child Spawn(const std::string& self, const std::string& role, int group) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) std::abort();
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    std::string g = std::to_string(group);
    if (g_trid.empty())
      execl(self.c_str(), self.c_str(), "--child", role.c_str(), "--child-group", g.c_str(), nullptr);
    else
      execl(self.c_str(), self.c_str(), "--child", role.c_str(), "--child-group", g.c_str(), "-r", g_trid.c_str(),
            nullptr);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c.in = in[1];
  c.out = fdopen(out[0], "r");
  return c;
}

// Reads "ready open_us=<t>"; returns t, or -1 with the child's message printed.
long ReadReady(Child& c) {
  char line[1024];
  if (fgets(line, sizeof(line), c.out) == nullptr) return -1;
  long us = -1;
  if (std::sscanf(line, "ready open_us=%ld", &us) != 1) {
    std::cerr << "child failed: " << line;
    return -1;
  }
  return us;
}

void Finish(Child& c) {
  close(c.in);
  int status;
  waitpid(c.pid, &status, 0);
  fclose(c.out);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void WaitForStdinToClose() {
  char c;
  while (read(0, &c, 1) > 0) {
  }
}

// The driver's attach: Env, the controller, and (secondary) one queue pair.
int RunDriverChild(const std::string& role, int group) {
  int64_t t0 = MonotonicNanos();
  EnvOptions o;
  o.group_id = group;
  o.primary = role == "primary";
  o.name = "bench-" + role;
  auto env = Env::Init(o);
  if (!env) {
    std::printf("error %s\n", env.error().ToString().c_str());
    return 1;
  }
  auto trid = TransportId::Parse(g_trid);
  if (!trid) {
    std::printf("error -r '%s': %s\n", g_trid.c_str(), trid.error().message.c_str());
    return 1;
  }
  auto ctrlr = Controller::Connect(**env, *trid);
  if (!ctrlr) {
    std::printf("error %s\n", ctrlr.error().ToString().c_str());
    return 1;
  }
  std::unique_ptr<IoQpair> qpair;
  if (role == "secondary") {
    auto q = (*ctrlr)->AllocIoQpair();
    if (!q) {
      std::printf("error %s\n", q.error().ToString().c_str());
      return 1;
    }
    qpair = std::move(*q);
  }
  std::printf("ready open_us=%ld\n", static_cast<long>((MonotonicNanos() - t0) / 1000));
  std::fflush(stdout);
  WaitForStdinToClose();
  return 0;
}

int RunChild(const std::string& role, int group) {
  int64_t t0 = MonotonicNanos();
  if (role != "noop" && !g_trid.empty()) return RunDriverChild(role, group);
  if (role == "noop") {
    std::printf("ready open_us=0\n");
  } else {
    shm::GroupOptions o;
    o.group_id = group;
    o.create = role == "primary";
    o.name = "bench-" + role;
    auto g = shm::Group::Open(o);
    if (!g) {
      std::printf("error %s\n", g.error().ToString().c_str());
      return 1;
    }
    std::printf("ready open_us=%ld\n", static_cast<long>((MonotonicNanos() - t0) / 1000));
    std::fflush(stdout);
    WaitForStdinToClose();
    return 0;
  }
  std::fflush(stdout);
  WaitForStdinToClose();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nvmux-bench-attach: primary init and secondary attach times (medians)", "nvmux-bench-attach"};
  int runs = 10, base = 990'000;
  bool json = false;
  std::string child_role;
  int child_group = 0;
  app.add_option("-n,--runs", runs, "number of runs")->check(CLI::Range(1, 1000));
  app.add_option("--group-base", base, "first group id to use")->check(CLI::Range(0, shm::kMaxGroupId - 1000));
  app.add_flag("--json", json, "print JSON instead of a table");
  app.add_option("-r,--trid", g_trid, "also attach this controller (a running nvmux-emu): the primary connects it, "
                                      "the secondary connects and creates a queue pair");
  app.add_option("--child", child_role)->group("");
  app.add_option("--child-group", child_group)->group("");
  CLI11_PARSE(app, argc, argv);
  if (!child_role.empty()) return RunChild(child_role, child_group);

  std::string self = "/proc/self/exe";
  char path[4096];
  ssize_t n = readlink(self.c_str(), path, sizeof(path) - 1);
  if (n > 0) self.assign(path, static_cast<size_t>(n));

  std::vector<double> prim_open, prim_wall, sec_open, sec_wall, ref_wall;
  for (int r = 0; r < runs; ++r) {
    int group = base + r;
    (void)shm::CleanStaleGroup(group);
    int64_t t0 = MonotonicNanos();
    Child ref = Spawn(self, "noop", group);
    if (ReadReady(ref) < 0) return 1;
    ref_wall.push_back(static_cast<double>(MonotonicNanos() - t0) / 1e6);
    Finish(ref);

    t0 = MonotonicNanos();
    Child prim = Spawn(self, "primary", group);
    long us = ReadReady(prim);
    if (us < 0) return 1;
    prim_wall.push_back(static_cast<double>(MonotonicNanos() - t0) / 1e6);
    prim_open.push_back(static_cast<double>(us) / 1e3);

    t0 = MonotonicNanos();
    Child sec = Spawn(self, "secondary", group);
    us = ReadReady(sec);
    if (us < 0) return 1;
    sec_wall.push_back(static_cast<double>(MonotonicNanos() - t0) / 1e6);
    sec_open.push_back(static_cast<double>(us) / 1e3);
    Finish(sec);
    Finish(prim);
  }
  double ref = Median(ref_wall);
  if (json) {
    std::printf("{\"runs\": %d, \"primary_init_ms\": %.2f, \"primary_start_to_ready_ms\": %.2f, "
                "\"secondary_attach_ms\": %.2f, \"secondary_start_to_ready_ms\": %.2f, "
                "\"reference_process_start_ms\": %.2f}\n",
                runs, Median(prim_open), Median(prim_wall), Median(sec_open), Median(sec_wall), ref);
    return 0;
  }
  std::printf("nvmux attach benchmark: medians of %d runs (ms)%s%s\n", runs, g_trid.empty() ? "" : ", controller ",
              g_trid.c_str());
  std::printf("%-40s %10s %12s\n", "", "median", "x reference");
  std::printf("%-40s %10.2f %12s\n", "reference: start a do-nothing process", ref, "1.00");
  const char* what = g_trid.empty() ? "Group::Open" : "Env + Connect";
  std::printf("%-40s %10.2f %12s\n", (std::string("primary: ") + what + " (init)").c_str(), Median(prim_open), "-");
  std::printf("%-40s %10.2f %12.2f\n", "primary: exec to ready", Median(prim_wall), Median(prim_wall) / ref);
  std::printf("%-40s %10.2f %12s\n",
              (std::string("secondary: ") + (g_trid.empty() ? what : "Env + Connect + qpair") + " (attach)").c_str(),
              Median(sec_open), "-");
  std::printf("%-40s %10.2f %12.2f\n", "secondary: exec to ready", Median(sec_wall), Median(sec_wall) / ref);
  return 0;
}
