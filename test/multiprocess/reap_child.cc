// nvmux_reap_child: helper process of reaper_test.cc.
//
//   nvmux_reap_child alloc -i G --seconds S
//     joins group G, prints "ready", then for S seconds allocates and frees
//     DMA memory and looks the controllers up (each takes the group lock),
//     every millisecond; prints "done <count>" (exit 0), or "error <what>"
//     at the first failure (exit 1): a group lock held for its whole
//     timeout by a reaper waiting on a device shows as ETIMEDOUT here.
//   nvmux_reap_child census -i G
//     joins group G and prints one line: every queue id not free as
//     "qid=<q>,<state>,<owner slot>,<on device>" (state: 1 in use,
//     2 deleting, 3 quarantined), "quarantined_dma=<records>,<bytes>" (rings),
//     "quarantined_data=<records>,<bytes>" (dead slots' other memory) and
//     "reaped=<pid>,<pid>,..." (the reap history).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "libclient/shared/shared_registry.h"
#include "nvmux/env.h"
#include "shm/base/clock.h"
#include "shm/group.h"

namespace nvmux {
namespace {

std::unique_ptr<Env> Join(int group, const char* name) {
  EnvOptions o;
  o.name = name;
  o.group_id = group;
  auto env = Env::Init(o);
  if (!env) {
    std::printf("error joining: %s\n", env.error().message.c_str());
    std::fflush(stdout);
    return nullptr;
  }
  return std::move(*env);
}

int Alloc(int group, double seconds) {
  auto env = Join(group, "reap_alloc");
  if (!env) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  uint64_t count = 0;
  int64_t end = MonotonicNanos() + static_cast<int64_t>(seconds * 1e9);
  while (MonotonicNanos() < end) {
    {
      auto buf = env->AllocDma(4096);
      if (!buf) {
        std::printf("error allocating DMA memory: %s\n", buf.error().message.c_str());
        return 1;
      }
    }
    auto published = PublishedControllers(env->group());
    if (!published) {
      std::printf("error looking the controllers up: %s\n", published.error().message.c_str());
      return 1;
    }
    ++count;
    ::usleep(1000);
  }
  std::printf("done %llu\n", static_cast<unsigned long long>(count));
  return 0;
}

int Census(int group) {
  auto env = Join(group, "reap_census");
  if (!env) return 1;
  shm::Group& g = env->group();
  std::string line;
  if (auto published = PublishedControllers(g)) {
    for (SharedController* c : *published) {
      shm::RobustLock lock(c->lock, [] { return Ok(); });
      auto guard = lock.Lock();
      for (uint32_t q = 1; q < kMaxSharedQids; ++q) {
        const SharedQid& id = c->qids[q];
        if (id.state == 0) continue;
        line += " qid=" + std::to_string(q) + "," + std::to_string(id.state) + "," + std::to_string(id.owner_slot) +
                "," + std::to_string(id.on_device);
      }
    }
  }
  auto quarantined = g.dma().UsageOf(shm::kQuarantineOwner);
  line += " quarantined_dma=" + std::to_string(quarantined.allocations) + "," + std::to_string(quarantined.bytes);
  shm::DmaAllocator::Usage data{};
  for (uint32_t slot = 0; slot < shm::kMaxProcesses; ++slot) {
    auto u = g.dma().UsageOf(shm::QuarantineOwnerOf(slot));
    data.allocations += u.allocations;
    data.bytes += u.bytes;
  }
  line += " quarantined_data=" + std::to_string(data.allocations) + "," + std::to_string(data.bytes);
  std::string reaped;
  for (const shm::ReapRecord& r : g.processes().ReapHistory()) reaped += std::to_string(r.pid) + ",";
  line += " reaped=" + reaped;
  std::printf("census%s\n", line.c_str());
  return 0;
}

}  // namespace
}  // namespace nvmux

int main(int argc, char** argv) {
  CLI::App app{"reaper test child"};
  app.require_subcommand(1);
  int group = 0;
  double seconds = 1;
  auto* alloc = app.add_subcommand("alloc", "allocate DMA memory and look controllers up in a loop");
  alloc->add_option("-i", group)->required();
  alloc->add_option("--seconds", seconds);
  auto* census = app.add_subcommand("census", "print queue ids, quarantined memory and reaped pids");
  census->add_option("-i", group)->required();
  CLI11_PARSE(app, argc, argv);
  if (alloc->parsed()) return nvmux::Alloc(group, seconds);
  return nvmux::Census(group);
}
