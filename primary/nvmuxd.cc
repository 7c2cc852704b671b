// nvmuxd: the primary service of an nvmux group. Creates the shared-memory
// group, runs the housekeeping (today: the reaper of dead processes) and
// stays up until SIGTERM/SIGINT, then removes the group's files when it is
// the last process. Controllers (-r) attach once libclient's transports land.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "primary/reaper.h"
#include "shm/base/log.h"
#include "shm/group.h"

using namespace nvmux;

int main(int argc, char** argv) {
  CLI::App app{"nvmuxd: the primary service of an nvmux shared-memory group", "nvmuxd"};
  app.footer(
      "Examples:\n"
      "  nvmuxd -i 0                 create group 0 and serve it until SIGTERM\n"
      "  nvmuxd -i 3 -m 0x1 --log-level info\n"
      "Secondaries join with the same group id: nvmux-perf -i 0 ...");
  int group_id = 0;
  std::string cores, level_text;
  std::vector<std::string> trids;
  size_t hugemem = 0;
  app.add_option("-i,--group", group_id, "shared-memory group id (0-" + std::to_string(shm::kMaxGroupId) + ")")
      ->required()
      ->check(CLI::Range(0, shm::kMaxGroupId));
  app.add_option("-r,--trid", trids, "transport id of a controller to attach (repeatable)");
  app.add_option("-m,--cores", cores, "core mask (0x3) or list ([0-1]) for nvmuxd's thread");
  app.add_option("--hugemem", hugemem, "MiB of hugepage memory to preallocate");
  app.add_option("--log-level", level_text, "error, warning (default), notice, info or debug");
  CLI11_PARSE(app, argc, argv);

  if (!level_text.empty()) {
    auto level = ParseLogLevel(level_text);
    if (!level) {
      std::cerr << "nvmuxd: bad --log-level '" << level_text << "': allowed error, warning, notice, info, debug\n";
      return 2;
    }
    SetLogLevel(*level);
  }
  if (!trids.empty()) {
    std::cerr << "nvmuxd: -r '" << trids.front()
              << "': attaching controllers is not available yet (nvmuxd gains it with libclient's controller "
                 "API); run without -r\n";
    return 2;
  }
  shm::GroupOptions options;
  options.group_id = group_id;
  options.create = true;
  options.name = "nvmuxd";
  options.mem_mb = hugemem;
  if (!cores.empty()) {
    auto set = shm::CoreSet::Parse(cores);
    if (!set) {
      std::cerr << "nvmuxd: -m: " << set.error().message << "\n";
      return 2;
    }
    options.cores = *set;
  }

  // Block the stop signals before EAL starts its threads, then poll for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto group = shm::Group::Open(options);
  if (!group) {
    std::cerr << "nvmuxd: " << group.error().ToString() << "\n";
    return 1;
  }
  std::printf("nvmuxd: group %d ready (pid %d)\n", group_id, static_cast<int>(getpid()));
  std::fflush(stdout);

  primary::Reaper reaper(**group);
  timespec zero{0, 0};
  Status run = reaper.Run([&] { return sigtimedwait(&stop_signals, nullptr, &zero) > 0; });
  if (!run) {
    std::cerr << "nvmuxd: " << run.error().ToString() << "\n";
    return 1;
  }
  std::printf("nvmuxd: group %d stopping (reaped %llu dead process(es))\n", group_id,
              static_cast<unsigned long long>(reaper.reaped()));
  group->reset();
  return 0;
}
